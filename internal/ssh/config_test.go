package ssh_test

import (
	"flag"
	"strings"
	"testing"
	"time"

	dssh "github.com/dhctl-dev/dhctl/internal/ssh"
)

func TestParseEndpoint(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want dssh.Endpoint
		err  string // a substring of the error; "" when it parses
	}{
		{in: "host", want: dssh.Endpoint{Host: "host"}},
		{in: "192.0.2.10", want: dssh.Endpoint{Host: "192.0.2.10"}},
		{in: "192.0.2.10:2222", want: dssh.Endpoint{Host: "192.0.2.10", Port: 2222}},
		{in: "user@host", want: dssh.Endpoint{User: "user", Host: "host"}},
		{in: "user@host:2222", want: dssh.Endpoint{User: "user", Host: "host", Port: 2222}},
		{in: "admin@node-1.example.test:22", want: dssh.Endpoint{User: "admin", Host: "node-1.example.test", Port: 22}},
		{in: "2001:db8::1", want: dssh.Endpoint{Host: "2001:db8::1"}},
		{in: "[2001:db8::1]", want: dssh.Endpoint{Host: "2001:db8::1"}},
		{in: "[2001:db8::1]:2222", want: dssh.Endpoint{Host: "2001:db8::1", Port: 2222}},
		{in: "root@[2001:db8::1]:22", want: dssh.Endpoint{User: "root", Host: "2001:db8::1", Port: 22}},
		{in: "[fe80::1%eth0]:22", want: dssh.Endpoint{Host: "fe80::1%eth0", Port: 22}},
		{in: "[myhost]:2222", want: dssh.Endpoint{Host: "myhost", Port: 2222}}, // as in known_hosts
		{in: "host:65535", want: dssh.Endpoint{Host: "host", Port: 65535}},

		{in: "", err: "empty host"},
		{in: "   ", err: "empty host"},
		{in: "host:0", err: "port 0 is out of range 1-65535"},
		{in: "host:65536", err: "port 65536 is out of range 1-65535"},
		{in: "host:99999999999", err: `port "99999999999" is not a number in 1-65535`},
		{in: "host:ssh", err: `port "ssh" is not a number in 1-65535`},
		{in: "host:+22", err: `port "+22" is not a number`},
		{in: "host:-1", err: `port "-1" is not a number`},
		{in: "host:", err: "empty port"},
		{in: "[2001:db8::1]:", err: "empty port"},
		{in: ":22", err: "the host is empty"},
		{in: "user@", err: "the host is empty"},
		{in: "@host", err: "empty user"},
		{in: "a@b@host", err: `more than one "@"`},
		{in: "2001:db8::1:22:x", err: "put an IPv6 address in brackets"},
		{in: "host:22:33", err: "put an IPv6 address in brackets"},
		{in: "[2001:db8::1", err: `"[" without "]"`},
		{in: "[2001:db8::1]22", err: `unexpected "22" after "]"`},
		{in: "[]:22", err: "the host is empty"},
		{in: "ho st", err: "whitespace"},
		{in: "host\n", err: "control characters"},
		{in: "-oProxyCommand=x", err: "looks like an option"},
		{in: "host/24", err: "is not a host name or address"},
		{in: "ssh://root@host:22", err: "is a URL"},
	} {
		got, err := dssh.ParseEndpoint(tc.in)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("ParseEndpoint(%q): %v", tc.in, err)
		case tc.err == "" && got != tc.want:
			t.Errorf("ParseEndpoint(%q) = %+v, want %+v", tc.in, got, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseEndpoint(%q) = %+v, %v; want an error with %q", tc.in, got, err, tc.err)
		}
	}
}

// A password typed into a host ("user:password@host") is refused without being repeated.
func TestParseEndpointNeverRepeatsAPassword(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"root:hunter2@host", "root:hun@ter2@host:22", "ssh://root:hunter2@host", "root:hunter2@ho st"} {
		_, err := dssh.ParseEndpoint(in)
		if err == nil || strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "ter2") {
			t.Errorf("ParseEndpoint(%q): %v; want an error without the password", in, err)
		}
	}
}

func TestSplitHostPortRefusesAUserAndPortZero(t *testing.T) {
	t.Parallel()
	if h, p, err := dssh.SplitHostPort("[2001:db8::1]:2222", 0); err != nil || h != "2001:db8::1" || p != 2222 {
		t.Fatalf("IPv6 with port: %q %d %v", h, p, err)
	}
	if h, p, err := dssh.SplitHostPort("host", 2200); err != nil || h != "host" || p != 2200 {
		t.Fatalf("default port: %q %d %v", h, p, err)
	}
	if h, p, err := dssh.SplitHostPort("host", 0); err != nil || h != "host" || p != dssh.DefaultPort {
		t.Fatalf("no default port: %q %d %v", h, p, err)
	}
	for in, want := range map[string]string{
		"user@host:22": `names a user ("user")`, // was read as a host named "user@host"
		"host:0":       "port 0 is out of range",
	} {
		if _, _, err := dssh.SplitHostPort(in, 0); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("SplitHostPort(%q): %v, want an error with %q", in, err, want)
		}
	}
}

// The Port flag value refuses 0 and out-of-range ports, so its zero value always means "not given".
func TestPortFlagRefusesZero(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"0": "port 0 is out of range", "65536": "out of range", "22x": "not a number", "": "not a number"} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(new(strings.Builder))
		var p dssh.Port
		fs.Var(&p, "ssh-port", "")
		if err := fs.Parse([]string{"--ssh-port", in}); err == nil || !strings.Contains(err.Error(), want) || p != 0 {
			t.Errorf("--ssh-port %q: port %d, err %v; want an error with %q", in, p, err, want)
		}
	}
	var p dssh.Port
	if p.String() != "0" || p.Type() != "port" {
		t.Fatalf("zero Port: %q %q", p.String(), p.Type())
	}
	if err := p.Set("2222"); err != nil || p != 2222 || p.String() != "2222" {
		t.Fatalf("Set(2222): %v, %d", err, p)
	}
}

// A user or a port left in Config.Host (or the bastion's) is refused when the client is made,
// instead of failing later as a name that does not resolve; so is a negative connect timeout,
// which used to become the default silently.
func TestConfigRefusesUserOrPortInHost(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		host, bastion, want string
	}{
		{host: "root@192.0.2.1", want: `host "root@192.0.2.1" is not a host name or address; give the host alone`},
		{host: "192.0.2.1:2222", want: `host "192.0.2.1:2222" is neither a host name nor an IP address`},
		{host: "[2001:db8::1]", want: "is not a host name or address"},
		{host: "192.0.2.1", bastion: "jump@192.0.2.2:2222", want: `bastion host "jump@192.0.2.2:2222" is not a host name or address`},
	} {
		_, err := dssh.New(dssh.Config{Host: tc.host, User: "u", Bastion: dssh.Endpoint{Host: tc.bastion}, Auth: dssh.Auth{Password: "x"},
			HostKeys: dssh.HostKeyPolicy{Mode: dssh.HostKeysInsecureIgnore}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("host %q, bastion %q: %v; want an error with %q", tc.host, tc.bastion, err, tc.want)
		}
	}
	_, err := dssh.New(dssh.Config{Host: "192.0.2.1", User: "u", Auth: dssh.Auth{Password: "x"}, ConnectTimeout: -time.Second,
		HostKeys: dssh.HostKeyPolicy{Mode: dssh.HostKeysInsecureIgnore}})
	if err == nil || !strings.Contains(err.Error(), "connect timeout -1s is negative") {
		t.Errorf("negative connect timeout: %v", err)
	}
	for _, host := range []string{"2001:db8::1", "fe80::1%eth0", "node-1.example.test", "192.0.2.1"} {
		if _, err := dssh.New(dssh.Config{Host: host, User: "u", Auth: dssh.Auth{Password: "x"},
			HostKeys: dssh.HostKeyPolicy{Mode: dssh.HostKeysInsecureIgnore}}); err != nil {
			t.Errorf("host %q: %v", host, err)
		}
	}
}
