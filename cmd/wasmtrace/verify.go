package main

import (
	"fmt"
	"io"
	"strconv"

	"github.com/wasmtrace/wasmtrace/record"
	"github.com/wasmtrace/wasmtrace/verify"
)

// exitDiffer is the exit status of a recording whose --verify found
// differences between the kernel and Go walkers.
const exitDiffer = 4

// maxShownDiffs caps the differences printed in full.
const maxShownDiffs = 5

// verifyFlag is --verify[=FRACTION]: alone it means every sample.
type verifyFlag struct{ f *float64 }

func (v verifyFlag) IsBoolFlag() bool { return true }

func (v verifyFlag) String() string {
	if v.f == nil || *v.f == 0 {
		return ""
	}
	return strconv.FormatFloat(*v.f, 'g', -1, 64)
}

func (v verifyFlag) Set(s string) error {
	switch s {
	case "true":
		*v.f = 1
		return nil
	case "false":
		*v.f = 0
		return nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || !(f > 0 && f <= 1) {
		return fmt.Errorf("want a fraction of samples in (0, 1], like 0.1")
	}
	*v.f = f
	return nil
}

var verifyHelp = fmt.Sprintf(`Verification (--verify[=FRACTION]): for FRACTION of the samples (all when
no fraction is given) the kernel walker also logs every word of the target's
memory it reads, and wasmtrace replays the walk over exactly those bytes with
its Go reference walker, from the same registers and thread pointer, then
compares the two walks frame by frame and read by read. The result is one
line on stderr ("verified N samples: N identical, 0 differ") and, for each
difference (the first %d), both stacks and why they differ. Logged samples are
larger in the ring buffer; samples not logged cost nothing more.

Exit status: 0 success; 1 error; 2 bad usage; 3 the target exited during
the recording (the profile taken so far is written); 4 --verify found
differences (the profile is written).
`, maxShownDiffs)

// reportVerify prints the verification summary and returns the error that
// sets the exit status when walks differed.
func reportVerify(stderr io.Writer, v *verify.Verifier, t *record.Target) error {
	if v == nil {
		return nil
	}
	fmt.Fprint(stderr, "wasmtrace: ")
	v.Write(stderr, maxShownDiffs, func(pc uint64) string {
		if t == nil { // -a: differences are shown by address
			return ""
		}
		if f, _, ok := t.Syms.Lookup(pc); ok {
			return f.Name
		}
		return ""
	})
	if v.Differ > 0 {
		return &exitError{code: exitDiffer, err: fmt.Errorf("the kernel and Go walkers differ on %d of %d samples", v.Differ, v.Checked)}
	}
	return nil
}
