package phase

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"

	"github.com/dhctl-dev/dhctl/internal/state"
)

// inputsDigest is "sha256:" + hex sha256 of the canonical JSON of the phase's inputs: marshalled,
// then decoded and marshalled again, so that map keys are sorted and numbers and whitespace are
// normalised whatever types and MarshalJSON methods produced the first encoding.
func inputsDigest(p WithInputs) (string, error) {
	in, err := p.Inputs()
	if err != nil {
		return "", fmt.Errorf("computing inputs: %w", err)
	}
	canonical, err := canonicalJSON(in)
	if err != nil {
		return "", fmt.Errorf("computing inputs: not representable as JSON: %w", err)
	}
	sum := sha256.Sum256(canonical)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

func canonicalJSON(v any) ([]byte, error) {
	first, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(first))
	dec.UseNumber()
	var generic any
	if err := dec.Decode(&generic); err != nil {
		return nil, err
	}
	return json.Marshal(generic)
}

// DirCheckpoints stores checkpoints as checkpoints/<phase-path>.json in a cluster state dir,
// written atomically by state.Dir.
type DirCheckpoints struct {
	dir *state.Dir
}

// NewDirCheckpoints returns a CheckpointStore over d.
func NewDirCheckpoints(d *state.Dir) *DirCheckpoints { return &DirCheckpoints{dir: d} }

func checkpointFile(path string) string { return "checkpoints/" + path + ".json" }

// Load returns the checkpoint of a phase path, or nil if there is none.
func (s *DirCheckpoints) Load(path string) (*Checkpoint, error) {
	data, err := s.dir.ReadFile(checkpointFile(path))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading checkpoint: %w", err)
	}
	var c Checkpoint
	if err := json.Unmarshal(data, &c); err != nil || c.Phase != path {
		if err == nil {
			err = fmt.Errorf("it names phase %q", c.Phase)
		}
		return nil, fmt.Errorf("checkpoint %s/%s is invalid (%v): delete it to re-run the phase", s.dir.Path(), checkpointFile(path), err)
	}
	return &c, nil
}

// Save writes c atomically.
func (s *DirCheckpoints) Save(c Checkpoint) error {
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("saving checkpoint: %w", err)
	}
	if err := s.dir.WriteFile(checkpointFile(c.Phase), append(data, '\n')); err != nil {
		return fmt.Errorf("saving checkpoint: %w", err)
	}
	return nil
}

// Reset removes the checkpoint of a phase path, if any.
func (s *DirCheckpoints) Reset(path string) error {
	if err := s.dir.Remove(checkpointFile(path)); err != nil {
		return fmt.Errorf("removing checkpoint: %w", err)
	}
	return nil
}

// ResetAll forgets every checkpoint, so that the next run redoes every phase.
func (s *DirCheckpoints) ResetAll() error {
	if err := s.dir.RemoveAll("checkpoints"); err != nil {
		return fmt.Errorf("removing checkpoints: %w", err)
	}
	return nil
}
