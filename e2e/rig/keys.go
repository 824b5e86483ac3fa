package rig

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"

	"golang.org/x/crypto/ssh"
)

// newEd25519 returns a fresh key as an OpenSSH private key file and a signer.
func newEd25519(comment string) (privatePEM []byte, signer ssh.Signer, err error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("rig: generating key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, nil, fmt.Errorf("rig: encoding key: %w", err)
	}
	signer, err = ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, nil, fmt.Errorf("rig: encoding key: %w", err)
	}
	return pem.EncodeToMemory(block), signer, nil
}
