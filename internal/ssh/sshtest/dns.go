package sshtest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// DNS is a tiny authoritative DNS server on 127.0.0.1 for tests: it answers A and AAAA queries
// for the names it was given and NXDOMAIN for every other name. Tests resolve host names only
// through it (Resolver), never through the machine's resolver, which would send the query off
// the machine. It serves UDP and TCP (a resolver configured with `options use-vc`, or retrying
// a truncated answer, uses TCP).
type DNS struct {
	udp   net.PacketConn
	tcp   net.Listener
	names map[string][]netip.Addr // lower case, no trailing dot

	mu      sync.Mutex
	queries []string
	wg      sync.WaitGroup
}

// StartDNS starts a server answering names (host name -> its IP addresses, answered in that
// order) until the test ends.
func StartDNS(t TB, names map[string][]string) *DNS {
	t.Helper()
	d := &DNS{names: map[string][]netip.Addr{}}
	for name, ips := range names {
		key := canonicalName(name)
		for _, ip := range ips {
			a, err := netip.ParseAddr(ip)
			if err != nil {
				t.Fatalf("sshtest: DNS name %s: %v", name, err)
			}
			d.names[key] = append(d.names[key], a.Unmap())
		}
	}
	var err error
	if d.udp, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
		t.Fatalf("sshtest: DNS: %v", err)
	}
	if d.tcp, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		d.udp.Close()
		t.Fatalf("sshtest: DNS: %v", err)
	}
	d.wg.Add(2)
	go d.serveUDP()
	go d.serveTCP()
	t.Cleanup(func() {
		d.udp.Close()
		d.tcp.Close()
		d.wg.Wait()
	})
	return d
}

// Resolver resolves through this server only, whatever /etc/resolv.conf names. (Go's resolver
// still reads /etc/hosts and the search list from resolv.conf: local files, no traffic; names
// with search suffixes appended are asked here too and get NXDOMAIN.)
func (d *DNS) Resolver() *net.Resolver {
	udpAddr, tcpAddr := d.udp.LocalAddr().String(), d.tcp.Addr().String()
	return &net.Resolver{
		PreferGo:     true,
		StrictErrors: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var dialer net.Dialer
			if strings.HasPrefix(network, "udp") {
				return dialer.DialContext(ctx, "udp", udpAddr)
			}
			return dialer.DialContext(ctx, "tcp", tcpAddr)
		},
	}
}

// Queries lists the names asked so far (lower case, without the trailing dot), in order.
func (d *DNS) Queries() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.queries...)
}

func (d *DNS) serveUDP() {
	defer d.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := d.udp.ReadFrom(buf)
		if err != nil {
			return
		}
		if resp := d.answer(buf[:n]); resp != nil {
			d.udp.WriteTo(resp, from) //nolint:errcheck // the client retries or times out
		}
	}
}

func (d *DNS) serveTCP() {
	defer d.wg.Done()
	for {
		conn, err := d.tcp.Accept()
		if err != nil {
			return
		}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			defer conn.Close()
			for {
				// A resolver sends its queries right away; an idle connection is dropped.
				conn.SetDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck
				var size [2]byte
				if _, err := io.ReadFull(conn, size[:]); err != nil {
					return
				}
				msg := make([]byte, binary.BigEndian.Uint16(size[:]))
				if _, err := io.ReadFull(conn, msg); err != nil {
					return
				}
				resp := d.answer(msg)
				if resp == nil {
					return
				}
				out := binary.BigEndian.AppendUint16(nil, uint16(len(resp)))
				if _, err := conn.Write(append(out, resp...)); err != nil {
					return
				}
			}
		}()
	}
}

// DNS wire format constants (RFC 1035).
const (
	dnsHeaderLen    = 12
	dnsTypeA        = 1
	dnsTypeAAAA     = 28
	dnsClassIN      = 1
	dnsFlagResponse = 0x8000
	dnsFlagAuth     = 0x0400
	dnsFlagRecDes   = 0x0100
	dnsFlagRecAvail = 0x0080
	dnsRcodeFormErr = 1
	dnsRcodeNXName  = 3
)

// answer builds the response to one query message, or nil when msg is not a query at all.
func (d *DNS) answer(msg []byte) []byte {
	if len(msg) < dnsHeaderLen || msg[2]&0x80 != 0 { // too short, or a response
		return nil
	}
	flags := binary.BigEndian.Uint16(msg[2:4])
	header := func(rcode uint16, questions, answers int) []byte {
		h := make([]byte, dnsHeaderLen)
		copy(h[0:2], msg[0:2]) // the query's ID
		binary.BigEndian.PutUint16(h[2:4], dnsFlagResponse|dnsFlagAuth|dnsFlagRecAvail|flags&dnsFlagRecDes|rcode)
		binary.BigEndian.PutUint16(h[4:6], uint16(questions))
		binary.BigEndian.PutUint16(h[6:8], uint16(answers))
		return h
	}
	name, end, err := parseQuestion(msg)
	if err != nil || binary.BigEndian.Uint16(msg[4:6]) != 1 {
		return header(dnsRcodeFormErr, 0, 0)
	}
	question := msg[dnsHeaderLen:end]
	qtype := binary.BigEndian.Uint16(question[len(question)-4:])
	qclass := binary.BigEndian.Uint16(question[len(question)-2:])
	d.mu.Lock()
	d.queries = append(d.queries, name)
	d.mu.Unlock()

	addrs, known := d.names[name]
	if !known {
		return append(header(dnsRcodeNXName, 1, 0), question...)
	}
	var records []byte
	count := 0
	for _, a := range addrs {
		if qclass != dnsClassIN || (qtype == dnsTypeA) != a.Is4() || (qtype != dnsTypeA && qtype != dnsTypeAAAA) {
			continue // the name exists but has no record of that type: an empty answer
		}
		typ := uint16(dnsTypeAAAA)
		if a.Is4() {
			typ = dnsTypeA
		}
		ip := a.AsSlice()
		records = append(records, 0xc0, dnsHeaderLen) // the name: a pointer to the question's
		records = binary.BigEndian.AppendUint16(records, typ)
		records = binary.BigEndian.AppendUint16(records, dnsClassIN)
		records = binary.BigEndian.AppendUint32(records, 60) // TTL
		records = binary.BigEndian.AppendUint16(records, uint16(len(ip)))
		records = append(records, ip...)
		count++
	}
	resp := append(header(0, 1, count), question...)
	return append(resp, records...)
}

// parseQuestion reads the first question's name (uncompressed, as queries carry it) and returns
// it and the offset just past the question's type and class.
func parseQuestion(msg []byte) (string, int, error) {
	var labels []string
	off := dnsHeaderLen
	for {
		if off >= len(msg) {
			return "", 0, errors.New("truncated name")
		}
		n := int(msg[off])
		off++
		if n == 0 {
			break
		}
		if n > 63 || off+n > len(msg) {
			return "", 0, fmt.Errorf("bad label length %d", n)
		}
		labels = append(labels, string(msg[off:off+n]))
		off += n
	}
	if off+4 > len(msg) {
		return "", 0, errors.New("truncated question")
	}
	return canonicalName(strings.Join(labels, ".")), off + 4, nil
}

func canonicalName(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}
