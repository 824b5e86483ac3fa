package ssh

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// File is a generated file to upload: Path is relative to the upload's RemoteDir (slash
// separated, no ".." elements), Mode its permission bits (0644 when zero).
type File struct {
	Path string
	Mode fs.FileMode
	Data []byte
}

// Upload ships LocalDir's tree and/or Files to RemoteDir on the host as ONE tar stream over one
// session, extracted by the remote tar with modes preserved. Files override same-named entries
// of LocalDir.
type Upload struct {
	RemoteDir string
	LocalDir  string
	Files     []File
	Sudo      bool
}

// Upload runs u. Files are owned by the extracting user (root under Sudo).
func (c *Client) Upload(ctx context.Context, u Upload) error {
	if u.RemoteDir == "" {
		return fmt.Errorf("upload to %s: remote directory is empty", c.cfg.target())
	}
	if u.LocalDir != "" {
		if fi, err := os.Stat(u.LocalDir); err != nil || !fi.IsDir() {
			return fmt.Errorf("upload to %s: local directory %s: %v", c.cfg.target(), u.LocalDir, errOrNotDir(err))
		}
	}
	for _, f := range u.Files {
		if err := checkRelPath(f.Path); err != nil {
			return fmt.Errorf("upload to %s: file %q: %w", c.cfg.target(), f.Path, err)
		}
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		// Buffer so tar headers and small files travel in full SSH packets, not 512-byte ones.
		bw := bufio.NewWriterSize(pw, 256<<10)
		err := writeTar(bw, u.LocalDir, u.Files)
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
		done <- err
	}()
	dir := shellQuote(u.RemoteDir)
	_, err := c.Run(ctx, Command{
		Cmd:   "mkdir -p " + dir + " && tar -x -o -p -f - -C " + dir,
		Sudo:  u.Sudo,
		Stdin: pr,
		LogAs: fmt.Sprintf("upload %d files to %s", countFiles(u), u.RemoteDir),
	})
	pr.CloseWithError(errors.New("upload ended")) // unblocks the tar writer if the remote side quit early
	tarErr := <-done
	if err != nil {
		return err // the remote failure explains a broken tar stream, not the other way round
	}
	if tarErr != nil {
		return fmt.Errorf("upload to %s:%s: build tar stream: %w", c.cfg.target(), u.RemoteDir, tarErr)
	}
	return nil
}

func countFiles(u Upload) int {
	n := len(u.Files)
	if u.LocalDir != "" {
		filepath.WalkDir(u.LocalDir, func(_ string, d fs.DirEntry, err error) error { //nolint:errcheck // only a count for the log
			if err == nil && !d.IsDir() {
				n++
			}
			return nil
		})
	}
	return n
}

func errOrNotDir(err error) error {
	if err != nil {
		return err
	}
	return errors.New("not a directory")
}

func checkRelPath(p string) error {
	if p == "" || path.IsAbs(p) {
		return errors.New("path must be relative and non-empty")
	}
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return errors.New(`path must not contain ".."`)
		}
	}
	return nil
}

// writeTar streams localDir's tree then files as a tar archive.
func writeTar(w io.Writer, localDir string, files []File) error {
	tw := tar.NewWriter(w)
	override := map[string]bool{}
	for _, f := range files {
		override[path.Clean(f.Path)] = true
	}
	if localDir != "" {
		err := filepath.WalkDir(localDir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(localDir, p)
			if err != nil || rel == "." {
				return err
			}
			rel = filepath.ToSlash(rel)
			if override[rel] {
				return nil
			}
			return addLocal(tw, p, rel, d)
		})
		if err != nil {
			return err
		}
	}
	sort.SliceStable(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	for _, f := range files {
		mode := f.Mode.Perm()
		if mode == 0 {
			mode = 0o644
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: path.Clean(f.Path), Mode: int64(mode), Size: int64(len(f.Data)), Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return err
		}
	}
	return tw.Close()
}

func addLocal(tw *tar.Writer, p, rel string, d fs.DirEntry) error {
	info, err := d.Info()
	if err != nil {
		return err
	}
	var link string
	if info.Mode()&fs.ModeSymlink != 0 {
		if link, err = os.Readlink(p); err != nil {
			return err
		}
	} else if !info.Mode().IsRegular() && !info.IsDir() {
		return fmt.Errorf("%s: only regular files, directories and symlinks can be uploaded", p)
	}
	hdr, err := tar.FileInfoHeader(info, link)
	if err != nil {
		return err
	}
	hdr.Name = rel
	if info.IsDir() {
		hdr.Name += "/"
	}
	hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
	hdr.Format = tar.FormatPAX
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.Copy(tw, f); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	return nil
}

// Download copies the remote file to w.
func (c *Client) Download(ctx context.Context, remotePath string, w io.Writer, sudo bool) error {
	_, err := c.Run(ctx, Command{Cmd: "cat -- " + shellQuote(remotePath), Sudo: sudo, Stdout: w, LogAs: "download " + remotePath})
	return err
}

// DownloadFile copies the remote file to localPath, written atomically with mode 0600 (such
// files, like admin.conf, usually hold secrets).
func (c *Client) DownloadFile(ctx context.Context, remotePath, localPath string, sudo bool) error {
	dir := filepath.Dir(localPath)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(localPath)+".download-*")
	if err != nil {
		return fmt.Errorf("download %s from %s: %w", remotePath, c.cfg.target(), err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := c.Download(ctx, remotePath, tmp, sudo); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), localPath)
}

// RunScript uploads script and runs it with args in one session: the script goes over stdin to
// a temporary file that is removed afterwards, and runs with stdin closed (so a command in it
// cannot swallow the rest of the script).
func (c *Client) RunScript(ctx context.Context, name string, script []byte, args []string, sudo bool) (Result, error) {
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = shellQuote(a)
	}
	run := `"$f"`
	if !strings.HasPrefix(string(script), "#!") {
		run = `/bin/sh "$f"`
	}
	cmd := `f=$(mktemp "${TMPDIR:-/tmp}/dhctl-script.XXXXXXXX") || exit 1; trap 'rm -f "$f"' EXIT; ` +
		`cat >"$f" && chmod 0700 "$f" && ` + run + ` ` + strings.Join(quoted, " ") + ` </dev/null`
	return c.Run(ctx, Command{Cmd: cmd, Sudo: sudo, Stdin: strings.NewReader(string(script)), LogAs: "script " + name})
}
