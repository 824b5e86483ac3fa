package sshtest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"

	gossh "golang.org/x/crypto/ssh"
)

// KeyWithKDFRounds is an encrypted OpenSSH key whose bcrypt KDF asks for the given rounds
// (ssh-keygen -a; the default is 16, each costs ~8 ms here).
func KeyWithKDFRounds(t TB, passphrase string, rounds uint32) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("%v", err)
	}
	block, err := gossh.MarshalPrivateKeyWithPassphrase(priv, "test", []byte(passphrase))
	if err != nil {
		t.Fatalf("%v", err)
	}
	b := block.Bytes
	off := len("openssh-key-v1\x00")
	for i := 0; i < 2; i++ { // ciphername, kdfname
		off += 4 + int(binary.BigEndian.Uint32(b[off:]))
	}
	off += 4                                         // length of kdfoptions
	off += 4 + int(binary.BigEndian.Uint32(b[off:])) // salt
	binary.BigEndian.PutUint32(b[off:], rounds)      // rounds
	return string(pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: b}))
}
