package logging

import (
	"encoding/base64"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// Masked replaces every secret the Redactor finds.
const Masked = "[REDACTED]"

// secretKey matches names of fields, flags and variables whose values are secrets: anything
// containing password/passphrase/secret/token/... (sudoPassword, client_secret, --ssh-passphrase,
// bootstrapToken, registryDockerCfg), the docker config keys "auth", ".dockerconfigjson" and
// ".dockercfg", and names ending in Auth/_auth/-auth (basicAuth, proxy_auth). "auth" is not a plain
// substring on purpose: that would also hit "author" or "authorized_keys".
const secretKey = `(?:[A-Za-z0-9_.-]*(?i:passw(?:or)?d|passphrase|secret|token|api[_-]?key|private[_-]?key|credentials?|dockercfg|dockerconfig)[A-Za-z0-9_.-]*|[A-Za-z0-9_.-]*(?:Auth|[_-]auth)|(?i:auth)|\.dockerconfigjson|\.dockercfg)`

// Built-in patterns, compiled once (immutable).
var (
	// PEM private keys, also a block cut off before its END line (e.g. truncated command output).
	pemPrivateKey = regexp.MustCompile(`(?s)(-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----).*?(?:(-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----)|$)`)
	// "key": "value" (JSON), and \"key\": \"value\" (JSON escaped inside another JSON string).
	jsonKeyValue        = regexp.MustCompile(`("` + secretKey + `"\s*:\s*")(?:[^"\\]|\\.)*"`)
	escapedJSONKeyValue = regexp.MustCompile(`(\\"` + secretKey + `\\"\s*:\s*\\")(?:[^"\\]|\\[^"])*\\"`)
	// key=value, key: value, --flag=value; the value may be quoted. The key must start at a word
	// boundary; "key": "value" (JSON) never matches here because the key is followed by a quote.
	// Applied line by line: a quoted value not closed on its line is masked to the end of the line.
	plainKeyValue = regexp.MustCompile(`(^|[^A-Za-z0-9_.-])(` + secretKey + `)(\s*[:=]\s*)("(?:[^"\\]|\\.)*"|'[^']*'|["'][^\n]*|[^\s"',;&}\]]+)`)
	// HTTP authorization: "Authorization: Basic xxx", "Bearer xxx".
	authorizationHeader = regexp.MustCompile(`(?i)(authorization\s*[:=]\s*"?[A-Za-z]+\s+)[^\s"',;]+`)
	bearerToken         = regexp.MustCompile(`(?i)(\bbearer\s+)[A-Za-z0-9\-._~+/]+=*`)
	// Passwords in URLs: scheme://user:password@host.
	urlUserinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+@`)
	// kubeadm bootstrap tokens: [a-z0-9]{6}.[a-z0-9]{16}.
	bootstrapToken = regexp.MustCompile(`\b[a-z0-9]{6}\.[a-z0-9]{16}\b`)
	// JSON Web Tokens (service account tokens): three base64url parts, the first two JSON objects.
	jwtToken = regexp.MustCompile(`\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+`)
	// Candidates for base64-encoded docker configs and PEM private keys (checked by decoding).
	base64Run = regexp.MustCompile(`[A-Za-z0-9+/]{24,}={0,2}`)
)

// Redactor masks secrets in text. It knows the built-in patterns above and exact values added at
// run time (passwords and passphrases from the configuration, which have no recognisable shape).
// It is safe for concurrent use. Create one per run and share it: it is never global.
type Redactor struct {
	mu      sync.RWMutex
	secrets []string // longest first, so a secret containing another is masked whole
}

// NewRedactor returns a Redactor masking the given exact values plus the built-in patterns.
func NewRedactor(secrets ...string) *Redactor {
	r := &Redactor{}
	for _, s := range secrets {
		r.Add(s)
	}
	return r
}

// Add registers an exact secret value to mask from now on. Empty values are ignored (masking ""
// would mask nothing useful); leading/trailing whitespace is kept because it is part of the value.
func (r *Redactor) Add(secret string) {
	if secret == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.secrets {
		if s == secret {
			return
		}
	}
	r.secrets = append(r.secrets, secret)
	sort.SliceStable(r.secrets, func(i, j int) bool { return len(r.secrets[i]) > len(r.secrets[j]) })
}

// String returns s with every secret masked.
func (r *Redactor) String(s string) string {
	if s == "" {
		return s
	}
	if r != nil {
		r.mu.RLock()
		for _, secret := range r.secrets {
			if strings.Contains(s, secret) {
				s = strings.ReplaceAll(s, secret, Masked)
			}
		}
		r.mu.RUnlock()
	}
	return redactPatterns(s)
}

// redactPatterns applies the built-in patterns. Regular expressions are slow on long text, so each
// is guarded by a cheap test (a keyword, or a hand-written scan) and runs only when it can match:
// the common log line (no secret) costs a lower-casing and a few substring searches.
func redactPatterns(s string) string {
	if strings.Contains(s, "PRIVATE KEY") {
		s = pemPrivateKey.ReplaceAllString(s, "${1}\n"+Masked+"\n${2}")
	}
	if strings.ContainsAny(s, ":=") || containsFold(s, "bearer") {
		s = perLine(s, redactLine)
	}
	if mayHaveBootstrapToken(s) {
		s = bootstrapToken.ReplaceAllString(s, Masked)
	}
	if strings.Contains(s, "eyJ") {
		s = jwtToken.ReplaceAllString(s, Masked)
	}
	if mayHaveEncodedSecret(s) {
		s = base64Run.ReplaceAllStringFunc(s, maskEncodedSecret)
	}
	return s
}

// perLine applies fn to each line of s (keeping the line ends), building a new string only if a
// line changed. Key/value, header and URL patterns never span lines, and running the regular
// expressions on the few lines that can match keeps long command output cheap.
func perLine(s string, fn func(string) string) string {
	var b strings.Builder
	changed := false
	for rest, off := s, 0; len(rest) > 0; {
		line := rest
		if i := strings.IndexByte(rest, '\n'); i >= 0 {
			line = rest[:i+1]
		}
		rest = rest[len(line):]
		red := fn(line)
		if red != line && !changed {
			changed = true
			b.Grow(len(s))
			b.WriteString(s[:off])
		}
		if changed {
			b.WriteString(red)
		}
		off += len(line)
	}
	if !changed {
		return s
	}
	return b.String()
}

// redactLine masks key/value forms, authorization headers, bearer tokens and URL passwords.
func redactLine(s string) string {
	if strings.ContainsAny(s, ":=") {
		lower := strings.ToLower(s)
		if hasSecretKeyword(lower) {
			if strings.Contains(s, `"`) {
				s = jsonKeyValue.ReplaceAllString(s, "${1}"+Masked+`"`)
				if strings.Contains(s, `\"`) {
					s = escapedJSONKeyValue.ReplaceAllString(s, "${1}"+Masked+`\"`)
				}
			}
			s = plainKeyValue.ReplaceAllStringFunc(s, maskPlainKeyValue)
			if strings.Contains(lower, "authorization") {
				s = authorizationHeader.ReplaceAllString(s, "${1}"+Masked)
			}
		}
		if strings.Contains(s, "://") && strings.Contains(s, "@") {
			s = urlUserinfo.ReplaceAllString(s, "${1}"+Masked+"@")
		}
	}
	if containsFold(s, "bearer") {
		s = bearerToken.ReplaceAllString(s, "${1}"+Masked)
	}
	return s
}

// secretKeywords are the words one of which every secretKey match contains (lower case).
var secretKeywords = []string{"passw", "passphrase", "secret", "token", "api", "private", "credential", "auth", "dockercfg", "dockerconfig"}

func hasSecretKeyword(lower string) bool {
	for _, k := range secretKeywords {
		if strings.Contains(lower, k) {
			return true
		}
	}
	return false
}

func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// mayHaveBootstrapToken reports whether some '.' has 6 [a-z0-9] before it and 16 after it.
func mayHaveBootstrapToken(s string) bool {
	for i := strings.IndexByte(s, '.'); i >= 0; {
		if i >= 6 && i+16 < len(s) {
			ok := true
			for j := i - 6; j < i+17 && ok; j++ {
				ok = j == i || isLowerAlnum(s[j])
			}
			if ok {
				return true
			}
		}
		next := strings.IndexByte(s[i+1:], '.')
		if next < 0 {
			break
		}
		i += 1 + next
	}
	return false
}

func isBase64(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/'
}

// mayHaveEncodedSecret reports whether s has a run of 24+ base64 characters that may encode a
// docker config or a PEM block: starting with "ey" or "ew" (base64 of '{' followed by '"', ' ',
// '\n' or '\r', i.e. a JSON object) or "LS0t" (base64 of "---", e.g. kubeconfig client-key-data).
func mayHaveEncodedSecret(s string) bool {
	run := 0
	for i := 0; i < len(s); i++ {
		if !isBase64(s[i]) {
			run = 0
			continue
		}
		run++
		if run == 24 {
			start := s[i-23:]
			if start[0] == 'e' && (start[1] == 'y' || start[1] == 'w') || strings.HasPrefix(start, "LS0t") {
				return true
			}
		}
	}
	return false
}

// maskPlainKeyValue keeps the key, separator and the quotes around a quoted value.
func maskPlainKeyValue(m string) string {
	sub := plainKeyValue.FindStringSubmatch(m)
	prefix, key, sep, value := sub[1], sub[2], sub[3], sub[4]
	if strings.HasPrefix(value, Masked[:len(Masked)-1]) { // already masked (exact secret)
		return m
	}
	switch {
	case len(value) >= 2 && (value[0] == '"' || value[0] == '\''):
		return prefix + key + sep + value[:1] + Masked + value[:1]
	default:
		return prefix + key + sep + Masked
	}
}

// maskEncodedSecret masks a base64 run that decodes to a docker config ({"auths": ...}) or to a
// PEM private key. A bare docker "auth" value (base64 of user:password) has no recognisable
// shape; it is caught by the "auth" key patterns instead.
func maskEncodedSecret(run string) string {
	dec, err := base64.StdEncoding.DecodeString(run)
	if err != nil {
		dec, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(run, "="))
		if err != nil {
			return run
		}
	}
	text := string(dec)
	if strings.Contains(text, `"auths"`) || strings.Contains(text, `"auth"`) || strings.Contains(text, "PRIVATE KEY") {
		return Masked
	}
	return run
}

// containsFold is strings.Contains ignoring ASCII case, without allocating.
func containsFold(s, sub string) bool {
	n := len(sub)
	for i := 0; i+n <= len(s); i++ {
		if strings.EqualFold(s[i:i+n], sub) {
			return true
		}
	}
	return false
}

// IsSecretKey reports whether a field, flag or variable name denotes a secret value (the same
// rule the Redactor uses for key=value forms), e.g. "sudoPassword", "--ssh-passphrase", "token".
func IsSecretKey(name string) bool {
	return secretKeyExact.MatchString(name)
}

var secretKeyExact = regexp.MustCompile(`^-{0,2}` + secretKey + `$`)
