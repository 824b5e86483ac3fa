package config

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// inputError is why a file named on the command line cannot be read, without the file name.
type inputError struct {
	msg  string
	hint string
	err  error // the context's error when reading was given up; nil otherwise
}

// openedFile is a file read for Load, with what identifies it on disk.
type openedFile struct {
	data []byte
	info fs.FileInfo
}

// ReadFile reads a file named on the command line (a version map override, a script) the way
// Load reads configuration files: anything but a regular file (a named pipe, a device, a
// directory) is refused without blocking on it, a file larger than limit bytes is refused, and
// reading is given up when ctx is done. Errors name the file, except for an empty path.
func ReadFile(ctx context.Context, path string, limit int64) ([]byte, error) {
	if path == "" {
		return nil, errors.New("the path is empty")
	}
	f, ie := readInput(ctx, path, limit)
	if ie != nil {
		if ie.err != nil {
			return nil, fmt.Errorf("%s: %w", path, ie.err)
		}
		return nil, fmt.Errorf("%s: %s", path, ie.msg)
	}
	return f.data, nil
}

// readInput opens path without blocking (O_NONBLOCK: opening a FIFO with no writer would wait
// forever), refuses what fstat says is not a regular file, and reads at most limit bytes. Opening
// and reading run apart from the caller so that a file system that hangs (a dead NFS server)
// cannot hold Load past its context; such a goroutine ends when the system call does.
func readInput(ctx context.Context, path string, limit int64) (*openedFile, *inputError) {
	if err := ctx.Err(); err != nil {
		return nil, &inputError{msg: err.Error(), err: err}
	}
	type result struct {
		f  *openedFile
		ie *inputError
	}
	done := make(chan result, 1)
	go func() {
		f, ie := readInputBlocking(path, limit)
		done <- result{f, ie}
	}()
	select {
	case r := <-done:
		return r.f, r.ie
	case <-ctx.Done():
		return nil, &inputError{msg: ctx.Err().Error(), err: ctx.Err()}
	}
}

func readInputBlocking(path string, limit int64) (*openedFile, *inputError) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, &inputError{msg: pathErrorText(err)}
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, &inputError{msg: pathErrorText(err)}
	}
	if ie := notRegular(info.Mode()); ie != nil {
		return nil, ie
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, &inputError{msg: pathErrorText(err)}
	}
	if int64(len(data)) > limit {
		msg := fmt.Sprintf("is larger than %d bytes", limit)
		if limit >= 1<<20 && limit%(1<<20) == 0 {
			msg = fmt.Sprintf("is larger than %d MiB", limit>>20)
		}
		return nil, &inputError{msg: msg, hint: "is this the right file?"}
	}
	return &openedFile{data: data, info: info}, nil
}

func notRegular(m fs.FileMode) *inputError {
	const hint = "pass a regular file: write the output of a command to a file first"
	switch {
	case m.IsRegular():
		return nil
	case m.IsDir():
		return &inputError{msg: "is a directory, not a file", hint: "pass the path of a file in it"}
	case m&fs.ModeNamedPipe != 0:
		return &inputError{msg: "is a named pipe (FIFO), not a regular file", hint: hint}
	case m&fs.ModeSocket != 0:
		return &inputError{msg: "is a socket, not a regular file", hint: hint}
	case m&fs.ModeDevice != 0:
		return &inputError{msg: "is a device, not a regular file", hint: hint}
	}
	return &inputError{msg: "is not a regular file", hint: hint}
}

func pathErrorText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
