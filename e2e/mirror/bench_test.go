package mirror_test

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/e2e/artifacts"
	"github.com/dhctl-dev/dhctl/e2e/internal/lab"
	"github.com/dhctl-dev/dhctl/e2e/internal/rigtest"
	"github.com/dhctl-dev/dhctl/internal/mirror"
)

// BenchmarkPushVsSkopeo pushes the rig bundle's images into empty paths of the rig's registry
// with dhctl mirror push's code and, in the same run, copies the same images from the same OCI
// layout (unpacked) with skopeo, one after the other. It reports skopeo's time over dhctl's
// (goal: at least 1.0) and the bundle's size next to the sum of its items' sizes.
//
//	go test -run '^$' -bench PushVsSkopeo -benchtime 3x ./e2e/mirror
func BenchmarkPushVsSkopeo(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	l := rigtest.StartLab(ctx, b, lab.Options{NoArtifacts: true})
	reg := l.Registry
	dir, err := artifacts.WriteBundle(ctx, artifacts.Options{Logf: b.Logf})
	if err != nil {
		b.Fatal(err)
	}
	bundle, err := mirror.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer bundle.Close()
	var images []string
	var itemsSize int64
	for _, it := range bundle.Manifest.Items {
		itemsSize += it.Size
		if it.Kind == mirror.KindImage {
			images = append(images, it.Path)
		}
	}
	b.Logf("FIGURE bundle %s: %d items whose sizes add up to %s", mirror.HumanBytes(bundle.Manifest.Size()), len(bundle.Manifest.Items), mirror.HumanBytes(itemsSize))
	layout := filepath.Join(b.TempDir(), "platform")
	if err := untar(filepath.Join(dir, "platform.tar"), layout); err != nil {
		b.Fatal(err)
	}
	certDir := filepath.Dir(reg.CAFile)
	var dhctl, skopeo time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := mirror.Push(ctx, bundle, mirror.PushOptions{Repo: fmt.Sprintf("%s/bench-dhctl-%d", reg.Host, i), Only: images,
			Registry: mirror.Registry{Transport: reg.Transport(), User: reg.User, Password: reg.Password}}); err != nil {
			b.Fatal(err)
		}
		dhctl += time.Since(start)
		start = time.Now()
		for _, p := range images {
			cmd := exec.CommandContext(ctx, "nsenter", "--net="+l.Rig.NetNS(), "skopeo", "copy", "--quiet", "--dest-cert-dir", certDir,
				"--dest-creds", reg.User+":"+reg.Password, "oci:"+layout+":"+p, fmt.Sprintf("docker://%s/bench-skopeo-%d/%s", reg.Host, i, p))
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("skopeo copy %s: %v\n%s", p, err, out)
			}
		}
		skopeo += time.Since(start)
	}
	b.StopTimer()
	b.ReportMetric(dhctl.Seconds()/float64(b.N), "dhctl-s/op")
	b.ReportMetric(skopeo.Seconds()/float64(b.N), "skopeo-s/op")
	b.ReportMetric(skopeo.Seconds()/dhctl.Seconds(), "skopeo/dhctl")
	b.Logf("FIGURE push of %d images: dhctl %v, skopeo copy %v per run; ratio skopeo/dhctl %.2f (goal >= 1.0)", len(images),
		(dhctl / time.Duration(b.N)).Round(time.Millisecond), (skopeo / time.Duration(b.N)).Round(time.Millisecond), skopeo.Seconds()/dhctl.Seconds())
}

func untar(file, dir string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		out, err := os.Create(p)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, tr)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
}
