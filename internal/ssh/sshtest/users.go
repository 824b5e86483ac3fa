package sshtest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// userPrefix starts the names of throwaway users; the creating process's pid follows it.
const userPrefix = "dht"

// SudoMode is what sudo allows a throwaway user.
type SudoMode int

const (
	SudoNone       SudoMode = iota // no sudoers rule
	SudoNoPassword                 // NOPASSWD: ALL
	SudoPassword                   // ALL, with the user's password
	SudoRequireTTY                 // NOPASSWD: ALL, but only from a terminal (Defaults requiretty)
)

// User is a throwaway local user (the hosts share the machine's /etc/passwd).
type User struct {
	Name     string
	Password string
	// Key is an unencrypted ed25519 private key authorized for the user on every lab host.
	Key string
}

// AddUser creates a user with a random password, a key and the given sudo rights; cleanup
// removes the user, its home and its sudoers file.
func (l *Lab) AddUser(t TB, sudo SudoMode) *User {
	t.Helper()
	u := &User{
		Name:     fmt.Sprintf("%s%dx%s", userPrefix, os.Getpid(), randomHex(2)),
		Password: "pw-" + randomHex(8),
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", "-f", "-r", u.Name).CombinedOutput(); err != nil {
			t.Logf("sshtest: cleanup: userdel %s: %v: %s", u.Name, err, out)
		}
	})
	if out, err := exec.Command("useradd", "-m", "-s", "/bin/bash", u.Name).CombinedOutput(); err != nil {
		t.Fatalf("sshtest: useradd %s: %v: %s", u.Name, err, out)
	}
	chpasswd := exec.Command("chpasswd")
	chpasswd.Stdin = strings.NewReader(u.Name + ":" + u.Password + "\n")
	if out, err := chpasswd.CombinedOutput(); err != nil {
		t.Fatalf("sshtest: chpasswd %s: %v: %s", u.Name, err, out)
	}
	u.Key = filepath.Join(l.Dir, u.Name+"_ed25519")
	l.Authorize(t, u.Name, writeKey(t, u.Key))

	var rule string
	switch sudo {
	case SudoNoPassword:
		rule = u.Name + " ALL=(ALL:ALL) NOPASSWD: ALL\n"
	case SudoPassword:
		rule = u.Name + " ALL=(ALL:ALL) ALL\n"
	case SudoRequireTTY:
		rule = "Defaults:" + u.Name + " requiretty\n" + u.Name + " ALL=(ALL:ALL) NOPASSWD: ALL\n"
	}
	if rule != "" {
		// Names in /etc/sudoers.d must not contain dots.
		file := filepath.Join("/etc/sudoers.d", namePrefix+fmt.Sprint(os.Getpid())+"-"+u.Name)
		t.Cleanup(func() { os.Remove(file) })
		content := "Defaults:" + u.Name + " lecture=never\n" + rule
		tmp := file + "-tmp"
		must(t, os.WriteFile(tmp, []byte(content), 0o440))
		if out, err := exec.Command("visudo", "-c", "-q", "-f", tmp).CombinedOutput(); err != nil {
			os.Remove(tmp)
			t.Fatalf("sshtest: sudoers rule rejected by visudo: %v: %s", err, out)
		}
		must(t, os.Rename(tmp, file))
	}
	return u
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) //nolint:errcheck // never fails on Linux
	return hex.EncodeToString(b)
}
