package config

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// loadOrHang runs Load and fails the test instead of hanging when Load blocks: a blocked Load
// is exactly the defect these tests look for. The hang detector is not a speed target.
func loadOrHang(t *testing.T, ctx context.Context, opts LoadOptions) (*Cluster, error) {
	t.Helper()
	type result struct {
		c   *Cluster
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := Load(ctx, opts)
		done <- result{c, err}
	}()
	select {
	case r := <-done:
		return r.c, r.err
	case <-time.After(30 * time.Second):
		t.Fatal("Load did not return within 30 s: it blocks on its input")
		return nil, nil
	}
}

func TestNonRegularFilesRefused(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "config.yml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	// Should Load block in open(2) after all, a writer lets it go so the test binary can exit.
	t.Cleanup(func() {
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	link := filepath.Join(dir, "link.yml")
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, want string
	}{
		{fifo, fifo + ": is a named pipe (FIFO), not a regular file; pass a regular file: write the output of a command to a file first"},
		{link, link + ": is a named pipe (FIFO), not a regular file; pass a regular file: write the output of a command to a file first"},
		{dir, dir + ": is a directory, not a file; pass the path of a file in it"},
		{"/dev/null", "/dev/null: is a device, not a regular file; pass a regular file: write the output of a command to a file first"},
	} {
		_, err := loadOrHang(t, context.Background(), LoadOptions{ConfigPaths: []string{tc.path}})
		var ps Problems
		if !errors.As(err, &ps) {
			t.Fatalf("%s: want Problems, got %v", tc.path, err)
		}
		if got := ps.Error(); got != tc.want {
			t.Errorf("%s:\n got: %s\nwant: %s", tc.path, got, tc.want)
		}
	}
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	t.Cleanup(func() {
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	done := make(chan error, 1)
	go func() { _, err := ReadFile(context.Background(), fifo, 1<<20); done <- err }()
	select {
	case err := <-done:
		if err == nil || err.Error() != fifo+": is a named pipe (FIFO), not a regular file" {
			t.Errorf("ReadFile(fifo) = %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("ReadFile blocked on a FIFO")
	}

	p := writeFile(t, "a.txt", "hello")
	if data, err := ReadFile(context.Background(), p, 5); err != nil || string(data) != "hello" {
		t.Errorf("ReadFile = %q, %v", data, err)
	}
	if _, err := ReadFile(context.Background(), p, 4); err == nil || err.Error() != p+": is larger than 4 bytes" {
		t.Errorf("ReadFile over the limit = %v", err)
	}
	if _, err := ReadFile(context.Background(), "", 4); err == nil || err.Error() != "the path is empty" {
		t.Errorf("ReadFile(\"\") = %v", err)
	}
	if _, err := ReadFile(context.Background(), filepath.Join(dir, "nope"), 4); err == nil || err.Error() != filepath.Join(dir, "nope")+": no such file or directory" {
		t.Errorf("ReadFile(missing) = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ReadFile(ctx, p, 5); !errors.Is(err, context.Canceled) {
		t.Errorf("ReadFile with a cancelled context = %v", err)
	}
}

func TestCancelledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := loadOrHang(t, ctx, LoadOptions{ConfigPaths: []string{writeFile(t, "c.yml", validCC)}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Load with a cancelled context = %v", err)
	}
}

func TestEmptyPath(t *testing.T) {
	cc := writeFile(t, "c.yml", validCC)
	for _, tc := range []struct {
		opts LoadOptions
		want string
	}{
		{LoadOptions{ConfigPaths: []string{""}}, "--config was given an empty path; pass a file name (is the variable meant to hold it empty?)"},
		{LoadOptions{ConfigPaths: []string{cc}, ResourcePaths: []string{""}}, "--resources was given an empty path; pass a file name (is the variable meant to hold it empty?)"},
		{LoadOptions{ConfigPaths: []string{cc}, ConnectionConfigPaths: []string{""}}, "--connection-config was given an empty path; pass a file name (is the variable meant to hold it empty?)"},
	} {
		_, ps := loadProblems(t, tc.opts)
		if ps.Error() != tc.want {
			t.Errorf("got: %s\nwant: %s", ps.Error(), tc.want)
		}
	}
}

func TestFileGivenTwice(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(p, []byte(validCC), 0o600); err != nil {
		t.Fatal(err)
	}
	same := dir + "/sub/../config.yml" // not filepath.Join: that would clean it to p
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	hard := filepath.Join(dir, "hard.yml")
	if err := os.Link(p, hard); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		opts LoadOptions
		want string
	}{
		{LoadOptions{ConfigPaths: []string{p, p}}, "config.yml: the file is given twice (--config config.yml and --config config.yml); pass each file once"},
		{LoadOptions{ConfigPaths: []string{p, same}}, "sub/../config.yml: the file is given twice (--config config.yml and --config sub/../config.yml); pass each file once"},
		{LoadOptions{ConfigPaths: []string{p, hard}}, "hard.yml: the file is given twice (--config config.yml and --config hard.yml); pass each file once"},
		{LoadOptions{ConfigPaths: []string{p}, ResourcePaths: []string{p}}, "config.yml: the file is given twice (--config config.yml and --resources config.yml); pass each file once"},
	} {
		_, ps := loadProblems(t, tc.opts)
		got := strings.ReplaceAll(ps.Error(), dir+string(filepath.Separator), "")
		if got != tc.want {
			t.Errorf("got: %s\nwant: %s", got, tc.want)
		}
	}
}

func TestFileTooLarge(t *testing.T) {
	p := writeFile(t, "big.yml", "# "+strings.Repeat("x", maxFileSize))
	_, ps := loadProblems(t, LoadOptions{ConfigPaths: []string{p}})
	if want := p + ": is larger than 8 MiB; is this the right file?"; ps.Error() != want {
		t.Errorf("got: %s\nwant: %s", ps.Error(), want)
	}
}
