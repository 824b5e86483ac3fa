package node

import (
	"log/slog"
	"strings"
	"testing"
)

func TestFamilyOf(t *testing.T) {
	for text, want := range map[string]OSFamily{
		"ID=debian\nVERSION_ID=\"12\"\n":                   Debian,
		"ID=ubuntu\nID_LIKE=debian\n":                      Debian,
		"ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n":   RHEL,
		"ID=\"almalinux\"\nID_LIKE=\"rhel centos fedora\"": RHEL,
		"ID=\"centos\"\nID_LIKE=\"rhel fedora\"\n":         RHEL,
	} {
		if got, _, err := FamilyOf(text); err != nil || got != want {
			t.Errorf("FamilyOf(%q) = %q, %v; want %q", text, got, err, want)
		}
	}
	if _, _, err := FamilyOf("ID=alpine\nPRETTY_NAME=\"Alpine Linux v3.20\"\n"); err == nil || !strings.Contains(err.Error(), "unsupported OS \"Alpine Linux v3.20\"") || !strings.Contains(err.Error(), "Rocky") {
		t.Errorf("alpine: %v", err)
	}
}

func TestMarkerParser(t *testing.T) {
	p := &markerParser{log: slog.New(slog.DiscardHandler), secrets: []string{"abcdef.0123456789abcdef"}}
	out := "::step 010_checks skipped\n::step 020_base started\nsome output\n::step 020_base done 1500\n::step 030_packages started\n" +
		"kubeadm join --token abcdef.0123456789abcdef\n::step 030_packages failed 3 250\n::tail line one\n::tail token abcdef.0123456789abcdef\n"
	// Written in odd chunks, as SSH delivers it.
	for i := 0; i < len(out); i += 7 {
		end := min(i+7, len(out))
		p.Write([]byte(out[i:end]))
	}
	p.flush()
	if len(p.steps) != 3 || p.steps[0].Status != StepSkipped || p.steps[1].Status != StepRan || p.steps[1].Duration.Milliseconds() != 1500 || p.steps[2].Status != StepFailed {
		t.Errorf("steps = %+v", p.steps)
	}
	if p.failed == nil || p.failed.Step != "030_packages" || p.failed.ExitCode != 3 || len(p.failed.Tail) != 2 {
		t.Fatalf("failed = %+v", p.failed)
	}
	p.failed.Host = "10.0.0.1"
	msg := p.failed.Error()
	if !strings.Contains(msg, "host 10.0.0.1: bundle step 030_packages failed (exit code 3)") || strings.Contains(msg, "0123456789abcdef") {
		t.Errorf("error: %s", msg)
	}
	if p.done {
		t.Error("done without ::bundle done")
	}
}
