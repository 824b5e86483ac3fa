package ssh

import (
	"bytes"
	"encoding/binary"
	"encoding/pem"
)

// MaxKDFRounds bounds the bcrypt rounds an encrypted OpenSSH key may ask for (about 8 ms each):
// ssh-keygen's default is 16 and -a 100 is common, while a key's header may ask for billions
// (days of CPU before the passphrase is even checked).
const MaxKDFRounds = 1024

// KDFRounds is the number of bcrypt rounds an encrypted key in OpenSSH's format asks for,
// read without decrypting it; 0 for any other key (PEM encryption's KDF is one MD5 pass).
func KDFRounds(key []byte) int {
	block, _ := pem.Decode(bytes.TrimSpace(key))
	if block == nil || block.Type != "OPENSSH PRIVATE KEY" {
		return 0
	}
	b, ok := bytes.CutPrefix(block.Bytes, []byte("openssh-key-v1\x00"))
	if !ok {
		return 0
	}
	str := func() ([]byte, bool) {
		if len(b) < 4 {
			return nil, false
		}
		n := binary.BigEndian.Uint32(b)
		if uint64(n) > uint64(len(b)-4) {
			return nil, false
		}
		s := b[4 : 4+n]
		b = b[4+n:]
		return s, true
	}
	_, ok1 := str() // cipher name
	kdf, ok2 := str()
	opts, ok3 := str()
	if !ok1 || !ok2 || !ok3 || string(kdf) != "bcrypt" {
		return 0
	}
	b = opts
	if _, ok := str(); !ok || len(b) < 4 { // salt, then rounds
		return 0
	}
	return int(binary.BigEndian.Uint32(b))
}
