// Command k8scheck validates Kubernetes manifests against the Kubernetes
// API's own Go types (k8s.io/api), strictly: a field the API does not have,
// a value of the wrong type or a duplicate field fails, as kubectl
// --validate=strict would. It has its own go.mod so that k8s.io/api stays
// out of wasmtrace's. It prints each object's kind and name, then the
// facts the deploy test checks, as JSON.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: k8scheck MANIFEST.yaml")
		os.Exit(2)
	}
	if err := check(os.Args[1]); err != nil {
		fmt.Fprintf(os.Stderr, "k8scheck: %v\n", err)
		os.Exit(1)
	}
}

func check(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var out []any
	for i, doc := range bytes.Split(data, []byte("\n---")) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var u unstructured.Unstructured
		if err := yaml.Unmarshal(doc, &u.Object); err != nil {
			return fmt.Errorf("document %d: %w", i, err)
		}
		var obj any
		switch u.GetKind() {
		case "DaemonSet":
			obj = &appsv1.DaemonSet{}
		case "ServiceAccount":
			obj = &corev1.ServiceAccount{}
		case "Namespace":
			obj = &corev1.Namespace{}
		case "ConfigMap":
			obj = &corev1.ConfigMap{}
		default:
			return fmt.Errorf("document %d: kind %q is not one this check knows", i, u.GetKind())
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			return fmt.Errorf("document %d (%s %s): %w", i, u.GetKind(), u.GetName(), err)
		}
		out = append(out, obj)
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}
