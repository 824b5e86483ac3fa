package logging

import (
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"testing"
)

const testPEM = `-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACBWcmUxZXhhbXBsZWtleW5vdHJlYWxseWFrZXl5eXl5eXl5AAAAmKeyKeyK
-----END OPENSSH PRIVATE KEY-----`

func TestRedactorString(t *testing.T) {
	dockerCfg := base64.StdEncoding.EncodeToString([]byte(`{"auths":{"registry.example.com":{"auth":"dXNlcjpodW50ZXIy"}}}`))
	dockerCfgIndented := base64.StdEncoding.EncodeToString([]byte("{\n  \"auths\": {\n    \"r.example\": {\"username\": \"u\", \"password\": \"p\"}\n  }\n}\n"))
	tests := []struct {
		name    string
		secrets []string
		in      string
		want    string
		// mustNotContain lists fragments that must be gone (for cases where the exact output is
		// less interesting than the absence of the secret).
		mustNotContain []string
	}{
		{name: "exact added secret", secrets: []string{"hunter2"}, in: "sudo failed with hunter2 as password", want: "sudo failed with [REDACTED] as password"},
		{name: "exact secret appears twice", secrets: []string{"s3cr3t!"}, in: "a s3cr3t! b s3cr3t!", want: "a [REDACTED] b [REDACTED]"},
		{name: "longer secret containing a shorter one is masked whole", secrets: []string{"abc", "abcdef"}, in: "x abcdef y", want: "x [REDACTED] y"},
		{name: "empty secret is ignored", secrets: []string{""}, in: "nothing to hide", want: "nothing to hide"},
		{name: "PEM private key block", in: "key:\n" + testPEM + "\nafter", want: "key:\n-----BEGIN OPENSSH PRIVATE KEY-----\n[REDACTED]\n-----END OPENSSH PRIVATE KEY-----\nafter"},
		{name: "RSA PEM key cut off before its END line", in: "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1234", want: "-----BEGIN RSA PRIVATE KEY-----\n[REDACTED]\n"},
		{name: "public key and certificate are kept", in: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", want: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"},
		{name: "password=value", in: "connecting with password=hunter2 to host", want: "connecting with password=[REDACTED] to host"},
		{name: "flag --sudo-password=value", in: "dhctl bootstrap --sudo-password=hunter2 --ssh-user=ubuntu", want: "dhctl bootstrap --sudo-password=[REDACTED] --ssh-user=ubuntu"},
		{name: "YAML sudoPassword", in: "sshUser: ubuntu\nsudoPassword: hunter2\nport: 22", want: "sshUser: ubuntu\nsudoPassword: [REDACTED]\nport: 22"},
		{name: "YAML quoted passphrase", in: `passphrase: "two words"`, want: `passphrase: "[REDACTED]"`},
		{name: "JSON password", in: `{"username":"u","password":"hun\"ter2","host":"h"}`, want: `{"username":"u","password":"[REDACTED]","host":"h"}`},
		{name: "JSON token with spaces", in: `{"bootstrapToken" : "abc"}`, want: `{"bootstrapToken" : "[REDACTED]"}`},
		{name: "escaped JSON inside a JSON string", in: `{"data":"{\"auth\":\"dXNlcjpwYXNz\"}"}`, want: `{"data":"{\"auth\":\"[REDACTED]\"}"}`},
		{name: "docker auth field", in: `"auth": "dXNlcjpodW50ZXIy"`, want: `"auth": "[REDACTED]"`},
		{name: ".dockerconfigjson YAML key", in: ".dockerconfigjson: eyJhdXRocyI6e319", want: ".dockerconfigjson: [REDACTED]"},
		{name: ".dockerconfigjson JSON key", in: `{".dockerconfigjson":"eyJhdXRocyI6e319"}`, want: `{".dockerconfigjson":"[REDACTED]"}`},
		{name: "base64 docker config without a key", in: "registry config " + dockerCfg + " applied", want: "registry config [REDACTED] applied"},
		{name: "base64 indented docker config", in: "cfg=" + dockerCfgIndented, mustNotContain: []string{dockerCfgIndented[:30]}},
		{name: "client_secret=value", in: "client_secret=abc123&grant_type=x", want: "client_secret=[REDACTED]&grant_type=x"},
		{name: "bearer token", in: "Authorization: Bearer abc.def-ghi", want: "Authorization: Bearer [REDACTED]"},
		{name: "lowercase bearer in text", in: "using bearer eyXYZ123=", want: "using bearer [REDACTED]"},
		{name: "basic authorization header", in: "authorization: Basic dXNlcjpwYXNz", want: "authorization: Basic [REDACTED]"},
		{name: "kubeadm bootstrap token", in: "kubeadm join 10.0.0.1:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:1234", want: "kubeadm join 10.0.0.1:6443 --token [REDACTED] --discovery-token-ca-cert-hash sha256:1234"},
		{name: "JWT service account token", in: "token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.c2lnbmF0dXJl here", want: "token [REDACTED] here"},
		{name: "password in URL", in: "pulling https://user:hunter2@registry.example.com/v2/", want: "pulling https://user:[REDACTED]@registry.example.com/v2/"},
		{name: "plain text is untouched", in: "Install CNI: flannel 0.26.7 on 10.0.0.1:22 took 4.0s", want: "Install CNI: flannel 0.26.7 on 10.0.0.1:22 took 4.0s"},
		{name: "host:port and versions are not tokens", in: "node-1.example.com:6443 v1.33.13 sha256:abcdef", want: "node-1.example.com:6443 v1.33.13 sha256:abcdef"},
		{name: "author is not auth", in: "author: jane", want: "author: jane"},
		{name: "empty string", in: "", want: ""},
		{name: "PGP private key block", in: "-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBF\n-----END PGP PRIVATE KEY BLOCK-----", want: "-----BEGIN PGP PRIVATE KEY BLOCK-----\n[REDACTED]\n-----END PGP PRIVATE KEY BLOCK-----"},
		{name: "kubeconfig client-key-data", in: "    client-key-data: " + base64.StdEncoding.EncodeToString([]byte(testPEM)) + "\n", want: "    client-key-data: [REDACTED]\n"},
		{name: "kubeconfig certificate data is kept", in: "certificate-authority-data: " + base64.StdEncoding.EncodeToString([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")), mustNotContain: []string{Masked}},
		{name: "Deckhouse registryDockerCfg", in: "registryDockerCfg: e30K", want: "registryDockerCfg: [REDACTED]"},
		{name: "basicAuth field", in: `{"basicAuth": "dXNlcjpw"}`, want: `{"basicAuth": "[REDACTED]"}`},
		{name: "quoted value spanning lines", in: "password: \"first line\nsecond\"\nuser: u", mustNotContain: []string{"first line"}},
		{name: "secret on one line of long output", in: "line one\nline two: ok\r\nexport TOKEN=abc123\nline four\n", want: "line one\nline two: ok\r\nexport TOKEN=[REDACTED]\nline four\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRedactor(tt.secrets...)
			got := r.String(tt.in)
			if tt.want != "" || tt.in == "" {
				if got != tt.want {
					t.Fatalf("String(%q)\n got %q\nwant %q", tt.in, got, tt.want)
				}
			}
			for _, frag := range tt.mustNotContain {
				if strings.Contains(got, frag) {
					t.Fatalf("String(%q) = %q still contains %q", tt.in, got, frag)
				}
			}
			if again := r.String(got); again != got {
				t.Fatalf("redaction is not idempotent: %q -> %q", got, again)
			}
		})
	}
}

func TestRedactorNilAndBuiltinsOnly(t *testing.T) {
	var r *Redactor
	if got := r.String("password=x"); got != "password=[REDACTED]" {
		t.Fatalf("nil Redactor must still apply built-in patterns, got %q", got)
	}
}

func TestRedactorConcurrentAdd(t *testing.T) {
	r := NewRedactor()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := range 100 {
				r.Add(fmt.Sprintf("secret-%d-%d", i, j))
			}
		}()
		go func() {
			defer wg.Done()
			for range 100 {
				_ = r.String("value secret-1-1 here")
			}
		}()
	}
	wg.Wait()
	if got := r.String("a secret-7-99 b"); got != "a [REDACTED] b" {
		t.Fatalf("got %q", got)
	}
}

func TestIsSecretKey(t *testing.T) {
	for _, k := range []string{"password", "sudoPassword", "--ssh-passphrase", "bootstrap_token", "client-secret", "auth", ".dockerconfigjson", "apiKey", "PASSWD", "registryDockerCfg", "basicAuth", "proxy_auth"} {
		if !IsSecretKey(k) {
			t.Errorf("IsSecretKey(%q) = false", k)
		}
	}
	for _, k := range []string{"user", "host", "author", "authorized_keys", "phase", "title", "error"} {
		if IsSecretKey(k) {
			t.Errorf("IsSecretKey(%q) = true", k)
		}
	}
}

func BenchmarkRedactorPlainLine(b *testing.B) {
	r := NewRedactor("hunter2", "correct horse battery staple")
	line := `phase bootstrap/install/cni: applied 14 objects to https://10.0.0.1:6443 in 1.25s (node master-0, flannel v0.26.7)`
	b.ReportAllocs()
	for b.Loop() {
		_ = r.String(line)
	}
}

func BenchmarkRedactorSecretLine(b *testing.B) {
	r := NewRedactor("hunter2")
	line := `ssh: sudo -S with password=hunter2 failed; kubeadm join --token abcdef.0123456789abcdef; {"auth":"dXNlcjpwYXNz"}`
	b.ReportAllocs()
	for b.Loop() {
		_ = r.String(line)
	}
}

// BenchmarkRedactor64KiBOutput: the tail of a remote command's output (apt, kubeadm) carried by
// an error, 64 KiB of ordinary text with one secret in it.
func BenchmarkRedactor64KiBOutput(b *testing.B) {
	r := NewRedactor("hunter2")
	var sb strings.Builder
	for i := 0; sb.Len() < 64<<10; i++ {
		fmt.Fprintf(&sb, "Get:%d http://deb.debian.org/debian bookworm/main amd64 libfoo%d amd64 1.2.%d-1 [%d kB]\n", i, i, i, i*7)
	}
	text := sb.String() + "sudo: password=hunter2\n"
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		_ = r.String(text)
	}
}
