// Package mirror_test drives `dhctl mirror pull` and `dhctl mirror push` as an operator does,
// against the rig's registry (TLS with a private CA, basic auth), killing each with SIGKILL
// half-way and checking that a re-run finishes without fetching or pushing again what was done.
package mirror_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/e2e/internal/lab"
	"github.com/dhctl-dev/dhctl/e2e/internal/rigtest"
	"github.com/dhctl-dev/dhctl/internal/mirror"
)

func TestMirrorPullAndPushSurviveSIGKILL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	// No machines: the registry (holding the rig's artifacts at l.ImagesRepo) is the source.
	l := rigtest.StartLab(ctx, t, lab.Options{})
	reg := l.Registry
	bundle := filepath.Join(l.Dir, "bundle")
	command := func(args ...string) *exec.Cmd {
		cmd := l.Command(ctx, args...)
		cmd.Env = append(cmd.Env, "DHCTL_SOURCE_PASSWORD="+reg.Password, "DHCTL_REGISTRY_PASSWORD="+reg.Password)
		return cmd
	}
	pull := []string{"mirror", "pull", "--source", l.ImagesRepo, "--source-login", reg.User, "--source-ca", reg.CAFile,
		"--version-map-override", l.OverridePath, "--images-bundle-chunk-size", "64M", bundle}

	// --dry-run lists every item with its size and writes nothing.
	listed, code, _ := rigtest.Run(t, command(append([]string{"mirror", "pull", "--dry-run"}, pull[2:len(pull)-1]...)...))
	if code != 0 || strings.Count(listed, "\nimage ") != 9 || strings.Count(listed, "\npackage ") != 7 || !strings.Contains(listed, "16 items for Kubernetes 1.33") {
		t.Errorf("mirror pull --dry-run: exit %d\n%s", code, listed)
	}
	if _, err := os.Stat(bundle); err == nil {
		t.Errorf("--dry-run created %s", bundle)
	}
	traffic, err := reg.CountSent(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Killed once three items are whole in the work dir.
	out := rigtest.KillWhen(t, command(pull...), "three items were pulled", 0, func() bool {
		data, err := os.ReadFile(filepath.Join(bundle, ".work", "done.json"))
		var done map[string]json.RawMessage
		return err == nil && json.Unmarshal(data, &done) == nil && len(done) >= 3
	})
	if _, err := mirror.Open(bundle); err == nil {
		t.Fatalf("a killed pull left something that opens as a bundle:\n%s", out)
	}
	first, err := traffic.Bytes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out, code, _ = rigtest.Run(t, command(pull...))
	if code != 0 {
		t.Fatalf("pull after the kill: exit %d\n%s", code, out)
	}
	total, err := traffic.Bytes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := mirror.Open(bundle)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	size := b.Manifest.Size()
	if n := len(b.Manifest.Items); n != 16 {
		t.Errorf("the bundle has %d items, want the rig's 9 images and 7 packages", n)
	}
	if got := strings.Count(out, "already in the bundle"); got < 3 {
		t.Errorf("the re-run found %d items done, want at least 3:\n%s", got, out)
	}
	// The registry sent the bundle's bytes about once in all (plus HTTP and TLS): the re-run did
	// not fetch again what the killed run had finished.
	t.Logf("FIGURE mirror pull killed after 3 items: the registry sent %s before the kill, %s after; the bundle holds %s",
		mirror.HumanBytes(first), mirror.HumanBytes(total-first), mirror.HumanBytes(size))
	if first < size/20 {
		t.Errorf("the killed pull had fetched only %d of %d bytes: too little to show that a re-run does not fetch it again", first, size)
	}
	if total > size*105/100 {
		t.Errorf("the registry sent %d bytes in all for a bundle of %d bytes: the re-run fetched finished blobs again", total, size)
	}
	for _, a := range b.Manifest.Archives {
		for _, f := range a.Files {
			if !strings.HasSuffix(f.Name, ".chunk") || f.Size > 64<<20 {
				t.Errorf("archive file %s (%d bytes): want chunks of at most 64 MiB", f.Name, f.Size)
			}
		}
	}

	// Push into an empty path, killed once three items are in, then again to the end.
	target := reg.Host + "/pushed/dhctl"
	push := []string{"mirror", "push", bundle, target, "--registry-login", reg.User, "--registry-ca", reg.CAFile}
	tags := filepath.Join(l.Rig.Dir(), "registry", "data", "docker", "registry", "v2", "repositories", "pushed", "dhctl")
	rigtest.KillWhen(t, command(push...), "three items were pushed", 0, func() bool {
		found, _ := filepath.Glob(filepath.Join(tags, "*", "_manifests", "tags", "*"))
		more, _ := filepath.Glob(filepath.Join(tags, "packages", "*", "_manifests", "tags", "*"))
		return len(found)+len(more) >= 3
	})
	out, code, _ = rigtest.Run(t, command(push...))
	if code != 0 {
		t.Fatalf("push after the kill: exit %d\n%s", code, out)
	}
	if got := strings.Count(out, "already in the registry"); got < 3 {
		t.Errorf("the re-run of the push found %d items there, want at least 3:\n%s", got, out)
	}
	if !regexp.MustCompile(`\d+ item\(s\) pushed \(.*\), \d+ already there; every item of the bundle verified`).MatchString(out) {
		t.Errorf("push summary missing:\n%s", out)
	}
	if strings.Contains(out, reg.Password) {
		t.Errorf("the push printed the password")
	}
	// Checked with another client (skopeo): every item is there, byte for byte.
	certDir := filepath.Dir(reg.CAFile)
	for _, it := range b.Manifest.Items {
		raw, err := exec.CommandContext(ctx, "nsenter", "--net="+l.Rig.NetNS(), "skopeo", "inspect", "--raw", "--cert-dir", certDir,
			"--creds", reg.User+":"+reg.Password, "docker://"+it.Ref(target)).Output()
		if err != nil {
			t.Errorf("skopeo inspect %s: %v", it.Ref(target), err)
			continue
		}
		sum := sha256.Sum256(raw)
		if d := "sha256:" + hex.EncodeToString(sum[:]); d != it.Digest {
			t.Errorf("%s: the registry's manifest is %s, the bundle's %s", it.Ref(target), d, it.Digest)
		}
	}

	// A flipped byte in the bundle is found at push, naming its item.
	victim := b.Manifest.Archives[0].Files[0]
	f, err := os.OpenFile(filepath.Join(bundle, victim.Name), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	one := make([]byte, 1)
	off := victim.Size / 2
	f.ReadAt(one, off)
	one[0] ^= 0x01
	f.WriteAt(one, off)
	f.Close()
	out, code, _ = rigtest.Run(t, command("mirror", "push", bundle, reg.Host+"/corrupt/dhctl", "--registry-login", reg.User, "--registry-ca", reg.CAFile))
	if code != 1 || !strings.Contains(out, "is corrupted") || !regexp.MustCompile(`blob sha256:[0-9a-f]{64} of packages/\S+ \(package, in `+regexp.QuoteMeta(victim.Name)).MatchString(out) {
		t.Errorf("push of a bundle with a flipped byte in %s at %d: exit %d, want 1 naming the item:\n%s", victim.Name, off, code, out)
	}
}
