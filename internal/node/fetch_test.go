package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/candi"
	"github.com/dhctl-dev/dhctl/internal/inventory"
)

// TestFetch runs the bundle's fetch function against a local HTTP server, with curl and with
// bash's /dev/tcp (hosts without curl): binary content arrives intact, an error answer is
// reported with the server's message.
func TestFetch(t *testing.T) {
	payload := make([]byte, 3<<20)
	for i := range payload {
		payload[i] = byte(i * 7 % 256) // NULs, CRs and LFs included
	}
	sum := sha256.Sum256(payload)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/packages/kubelet/kubelet" {
			w.Write(payload)
			return
		}
		http.Error(w, "package kubectl file kubectl: checksum mismatch", http.StatusBadGateway)
	}))
	defer srv.Close()

	b, err := Render(candi.FS, sampleData(Debian, inventory.Worker, false))
	if err != nil {
		t.Fatal(err)
	}
	script := string(b.Steps[0].Script)
	lib := script[:strings.Index(script, "# OS family:")]
	for _, mode := range []string{"curl", "devtcp"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "curl" {
				if _, err := exec.LookPath("curl"); err != nil {
					t.Fatal("curl is missing: run scripts/ensure-deps.sh")
				}
			}
			dir := t.TempDir()
			hide := ""
			if mode == "devtcp" {
				hide = `command() { if [[ "$1" == -v && "$2" == curl ]]; then return 1; fi; builtin command "$@"; }` + "\n"
			}
			test := lib + hide + `
fetch /packages/kubelet/kubelet "$1/kubelet"
sha256sum "$1/kubelet" | cut -d' ' -f1
if fetch /packages/kubectl/kubectl "$1/kubectl"; then echo "fetched a failure"; exit 1; fi
[[ ! -e "$1/kubectl" ]] || { echo "left a partial file"; exit 1; }
echo fetched-ok
`
			f := filepath.Join(dir, "t.sh")
			if err := os.WriteFile(f, []byte(test), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "bash", f, dir)
			cmd.Env = append(os.Environ(), "DHCTL_PACKAGES_URL="+srv.URL)
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), hex.EncodeToString(sum[:])) || !strings.Contains(string(out), "fetched-ok") {
				t.Fatalf("%v\n%s", err, out)
			}
			if !strings.Contains(string(out), "HTTP 502 for /packages/kubectl/kubectl: package kubectl file kubectl: checksum mismatch") {
				t.Errorf("the server's message is not reported:\n%s", out)
			}
		})
	}
}
