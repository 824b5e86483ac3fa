package install

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/dhctl-dev/dhctl/internal/state"
)

// ClusterUUIDFile is the state dir file holding the cluster's UUID.
const ClusterUUIDFile = "cluster-uuid"

// ClusterUUID returns the cluster's UUID from the state dir, making and saving a random one on
// first use, so every run on one cluster (and the d8-cluster-uuid ConfigMap) agrees.
func ClusterUUID(dir *state.Dir) (string, error) {
	data, err := dir.ReadFile(ClusterUUIDFile)
	if err == nil {
		id := strings.TrimSpace(string(data))
		if !uuidPattern.MatchString(id) {
			return "", fmt.Errorf("state %s: %q is not a UUID; restore it from the cluster's kube-system/d8-cluster-uuid ConfigMap", ClusterUUIDFile, id)
		}
		return id, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	id, err := NewUUID()
	if err != nil {
		return "", err
	}
	if err := dir.WriteFile(ClusterUUIDFile, []byte(id+"\n")); err != nil {
		return "", err
	}
	return id, nil
}

// NewUUID is a random (version 4) UUID.
func NewUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
