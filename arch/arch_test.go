package arch

import "testing"

func TestByName(t *testing.T) {
	for name, want := range map[string]string{
		"amd64": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64",
	} {
		a, err := ByName(name)
		if err != nil || a.Name != want {
			t.Errorf("ByName(%q) = %q, %v; want %q", name, a.Name, err, want)
		}
	}
	if _, err := ByName("riscv64"); err == nil || err.Error() != `unsupported architecture "riscv64" (supported: x86_64, aarch64)` {
		t.Errorf("ByName(riscv64) error = %v", err)
	}
}

// The seed's alignment checks, as Wasmtime 3 asserts them
// (crates/runtime/src/traphandlers/backtrace/{x86_64,aarch64}.rs).
func TestSeedChecks(t *testing.T) {
	for _, tc := range []struct {
		a      Arch
		sp     uint64
		spOK   bool
		fp     uint64
		fpOK   bool
		stopFP uint64 // the trampoline frame for entry SP 0x7000_0008 / 0x7000_0010
	}{
		{AMD64, 0x7000_0008, true, 0x7000_0000, true, 0x7000_0000},
		{AMD64, 0x7000_0010, false, 0x7000_0008, false, 0},
		{ARM64, 0x7000_0010, true, 0x7000_0000, true, 0x7000_0000},
		{ARM64, 0x7000_0008, false, 0x7000_0004, false, 0},
	} {
		if got := tc.a.SeedEntrySPAligned(tc.sp); got != tc.spOK {
			t.Errorf("%s: SeedEntrySPAligned(%#x) = %v", tc.a.Name, tc.sp, got)
		}
		if got := tc.a.FPAligned(tc.fp); got != tc.fpOK {
			t.Errorf("%s: FPAligned(%#x) = %v", tc.a.Name, tc.fp, got)
		}
		if tc.spOK && tc.sp-tc.a.SeedEntrySPGap != tc.stopFP {
			t.Errorf("%s: entry SP %#x ends the region at fp %#x, want %#x", tc.a.Name, tc.sp, tc.sp-tc.a.SeedEntrySPGap, tc.stopFP)
		}
	}
}
