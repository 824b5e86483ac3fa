package main

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// The built program exits 0 on SIGTERM: that is how kubelet stops a sandbox.
func TestExitsZeroOnSIGTERM(t *testing.T) {
	bin := t.TempDir() + "/pause"
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		cmd := exec.Command(bin)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		// Still blocking after a moment: it must not exit on its own.
		select {
		case err := <-done:
			t.Fatalf("pause exited on its own: %v", err)
		case <-time.After(300 * time.Millisecond):
		}
		cmd.Process.Signal(sig)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("pause after %v: %v, want exit 0", sig, err)
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("pause did not exit within 10s of %v", sig)
		}
	}
	_ = os.Remove(bin)
}
