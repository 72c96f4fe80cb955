//go:build !amd64

package dump

import (
	"errors"

	"github.com/wasmtrace/wasmtrace/walker"
)

func registers(tid int) (walker.Thread, error) {
	return walker.Thread{}, errorf(tid, "read registers", errors.New("only x86-64 is supported"))
}
