package sshtest

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"slices"
	"testing"
	"time"
)

func TestDNSAnswersKnownNamesAndNXDOMAIN(t *testing.T) {
	d := StartDNS(t, map[string][]string{"h0.lab.test": {"10.199.0.1"}, "v6.lab.test": {"fd00::1"}})
	r := d.Resolver()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if got, err := r.LookupHost(ctx, "H0.Lab.Test"); err != nil || !slices.Equal(got, []string{"10.199.0.1"}) {
		t.Fatalf("known name: %v, %v", got, err)
	}
	if got, err := r.LookupHost(ctx, "v6.lab.test"); err != nil || !slices.Equal(got, []string{"fd00::1"}) {
		t.Fatalf("known IPv6 name: %v, %v", got, err)
	}
	_, err := r.LookupHost(ctx, "dhctl-no-such-host.invalid")
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Fatalf("unknown name: want a not-found DNS error, got %v", err)
	}
	if q := d.Queries(); !slices.Contains(q, "h0.lab.test") || !slices.Contains(q, "dhctl-no-such-host.invalid") {
		t.Fatalf("queries = %q", q)
	}

	// Over TCP (length-prefixed), as a resolver with use-vc or after a truncated answer asks.
	conn, err := r.Dial(ctx, "tcp", "ignored:53")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck
	query := []byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}
	for _, label := range []string{"h0", "lab", "test"} {
		query = append(append(query, byte(len(label))), label...)
	}
	query = append(query, 0, 0, dnsTypeA, 0, dnsClassIN)
	if _, err := conn.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(query))), query...)); err != nil {
		t.Fatal(err)
	}
	var size [2]byte
	if _, err := io.ReadFull(conn, size[:]); err != nil {
		t.Fatal(err)
	}
	resp := make([]byte, binary.BigEndian.Uint16(size[:]))
	if _, err := io.ReadFull(conn, resp); err != nil {
		t.Fatal(err)
	}
	if resp[0] != 0x12 || resp[1] != 0x34 || resp[3]&0x0f != 0 || binary.BigEndian.Uint16(resp[6:8]) != 1 ||
		!slices.Equal(resp[len(resp)-4:], []byte{10, 199, 0, 1}) {
		t.Fatalf("TCP answer % x", resp)
	}
}
