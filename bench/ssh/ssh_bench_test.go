// Package sshbench measures internal/ssh against real OpenSSH sshd processes (see
// docs/benchmarks.md, section "SSH"). Run as root:
//
//	go test -run '^$' -bench . -benchtime 3x ./bench/ssh
package sshbench

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	dssh "github.com/dhctl-dev/dhctl/internal/ssh"
	"github.com/dhctl-dev/dhctl/internal/ssh/sshtest"
)

// benchUser logs in as a throwaway user with Debian's default dot-files: root's shell start-up
// on this machine (pyenv init in ~/.bashrc, which bash reads under sshd) costs ~200 ms per
// session and would measure the machine's profile rather than SSH.
func benchUser(b *testing.B, lab *sshtest.Lab) *sshtest.User {
	return lab.AddUser(b, sshtest.SudoNone)
}

type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

func clientsFor(b *testing.B, lab *sshtest.Lab, u *sshtest.User, hosts []*sshtest.Host) []*dssh.Client {
	return clientsVia(b, lab.DialContext, b.TempDir(), u, hosts)
}

// clientsVia makes one client per host, all pinning host keys in state through one PinStore (as
// a dhctl run does).
func clientsVia(b *testing.B, dial dialFunc, state string, u *sshtest.User, hosts []*sshtest.Host) []*dssh.Client {
	pins := dssh.NewPinStore(state)
	var cs []*dssh.Client
	for _, h := range hosts {
		c, err := dssh.New(dssh.Config{
			Host: h.Addr, User: u.Name,
			Auth:        dssh.Auth{Keys: []dssh.KeyFile{{Path: u.Key}}},
			HostKeys:    dssh.HostKeyPolicy{StateDir: state, Pins: pins},
			DialContext: dial,
		})
		if err != nil {
			b.Fatal(err)
		}
		cs = append(cs, c)
	}
	return cs
}

func fanoutTrue(b *testing.B, clients []*dssh.Client, concurrency int) time.Duration {
	d, _, _ := fanoutTrueInFlight(b, clients, concurrency)
	return d
}

// fanoutTrueInFlight also returns the largest number of hosts that were being worked on at once
// and the median time one host took (from its start, after waiting for a slot, to its end).
func fanoutTrueInFlight(b *testing.B, clients []*dssh.Client, concurrency int) (time.Duration, int64, time.Duration) {
	var inFlight, most atomic.Int64
	start := time.Now()
	res := dssh.Fanout(context.Background(), clients, dssh.FanoutOptions{Concurrency: concurrency}, func(ctx context.Context, c *dssh.Client) (struct{}, error) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		_, err := c.Run(ctx, dssh.Command{Cmd: "true"})
		return struct{}{}, err
	})
	d := time.Since(start)
	if err := dssh.FanoutErrors(res); err != nil {
		b.Fatal(err)
	}
	perHost := make([]time.Duration, len(res))
	for i, r := range res {
		perHost[i] = r.Duration
	}
	slices.Sort(perHost)
	return d, most.Load(), perHost[len(perHost)/2]
}

// oneHost returns the median of three cold and of three warm runs on one host (the reference
// of the ratios, so one unlucky run on this shared machine does not skew them).
func oneHost(b *testing.B, dial dialFunc, u *sshtest.User, h *sshtest.Host) (cold, warm time.Duration) {
	var colds, warms []time.Duration
	for range 3 {
		one := clientsVia(b, dial, b.TempDir(), u, []*sshtest.Host{h})
		colds = append(colds, fanoutTrue(b, one, 0))
		warms = append(warms, fanoutTrue(b, one, 0))
		closeAll(one)
	}
	slices.Sort(colds)
	slices.Sort(warms)
	return colds[1], warms[1]
}

func closeAll(cs []*dssh.Client) {
	for _, c := range cs {
		c.Close()
	}
}

// BenchmarkFanout50 runs `true` on 1 host and on 50 hosts with the default concurrency, cold
// (connect + run, host keys pinned on first contact) and warm (over established connections),
// and reports the ratios, the peak RSS and CPU of this process during the 50-host cold run, and
// the CPU the sshd side spent per host (all of it runs on the same 2 cores as the client here).
//
// Sub-benchmarks run the sshd servers as the harness does (pam=off) and with PAM (pam=on:
// Debian's shipped sshd_config has UsePAM yes, so that is what a real Debian node costs), and
// give each host's link a one-way delay (0, 5 ms, 20 ms; see sshtest.DialContextWithDelay), so
// that one host's time is made of network round trips as on a real fleet rather than of CPU
// alone. ms-cold-50hosts-all-at-once is the same cold run with Concurrency 50, to show what the
// default of 32 (two waves for 50 hosts) costs.
func BenchmarkFanout50(b *testing.B) {
	for _, pam := range []string{"off", "on"} {
		b.Run("pam="+pam, func(b *testing.B) {
			var opts sshtest.Options
			if pam == "on" {
				opts.SSHDArgs = []string{"-o", "UsePAM=yes"}
			}
			lab := sshtest.NewLab(b, 50, opts)
			u := benchUser(b, lab)
			for _, delay := range []time.Duration{0, 5 * time.Millisecond, 20 * time.Millisecond} {
				b.Run(fmt.Sprintf("delay=%s", delay), func(b *testing.B) {
					fanout50(b, lab, u, lab.DialContextWithDelay(delay))
				})
			}
		})
	}
}

func fanout50(b *testing.B, lab *sshtest.Lab, u *sshtest.User, dial dialFunc) {
	var cold1, cold50, coldAll, warm1, warm50 time.Duration
	var peak, inFlight int64
	var cpu50, server50, hostMedian time.Duration
	for i := 0; i < b.N; i++ {
		c1, w1 := oneHost(b, dial, u, lab.Hosts[0])
		cold1 += c1
		warm1 += w1

		all := clientsVia(b, dial, b.TempDir(), u, lab.Hosts)
		resetPeakRSS(b)
		cpuBefore, serverBefore := cpuTime(b), serverCPU(lab)
		d, most, median := fanoutTrueInFlight(b, all, 0)
		cold50 += d
		hostMedian += median
		inFlight = max(inFlight, most)
		cpu50 += cpuTime(b) - cpuBefore
		peak = max(peak, peakRSS(b))
		warm50 += fanoutTrue(b, all, 0)
		closeAll(all)
		// sshd accounts a connection's CPU (handshake, session, shell) once it has reaped it.
		time.Sleep(500 * time.Millisecond)
		server50 += serverCPU(lab) - serverBefore

		all = clientsVia(b, dial, b.TempDir(), u, lab.Hosts)
		coldAll += fanoutTrue(b, all, len(all))
		closeAll(all)
		time.Sleep(300 * time.Millisecond)
	}
	n := float64(b.N)
	b.ReportMetric(float64(cold1.Microseconds())/n/1000, "ms-cold-1host")
	b.ReportMetric(float64(cold50.Microseconds())/n/1000, "ms-cold-50hosts")
	b.ReportMetric(float64(cold50)/float64(cold1), "ratio-cold")
	b.ReportMetric(float64(hostMedian.Microseconds())/n/1000, "ms-cold-per-host-median-in-50")
	b.ReportMetric(float64(coldAll.Microseconds())/n/1000, "ms-cold-50hosts-all-at-once")
	b.ReportMetric(float64(warm1.Microseconds())/n/1000, "ms-warm-1host")
	b.ReportMetric(float64(warm50.Microseconds())/n/1000, "ms-warm-50hosts")
	b.ReportMetric(float64(warm50)/float64(warm1), "ratio-warm")
	b.ReportMetric(float64(peak)/1024, "MiB-peak-RSS")
	b.ReportMetric(float64(inFlight), "hosts-in-flight-max")
	b.ReportMetric(float64(cpu50.Milliseconds())/n, "ms-client-CPU-cold-50hosts")
	b.ReportMetric(float64(server50.Milliseconds())/n/50, "ms-sshd-CPU-per-host(connect+2-sessions)")
}

// BenchmarkConnectCost breaks one host's cost down, one connection after another (no
// contention): per connection, the wall time, this process's CPU and the sshd side's CPU (the
// sshd, its per-connection children and the shell they start), for a connection alone
// (handshake, auth, host key check) and for a connection running `true`, and the same with the
// OpenSSH client for comparison. Sub-benchmarks vary the server: as the harness runs it, without
// re-exec per connection (-r), and with PAM (Debian's default UsePAM yes).
func BenchmarkConnectCost(b *testing.B) {
	variants := []struct {
		name string
		args []string
	}{
		{"harness", nil},
		{"no-reexec", []string{"-r"}},
		{"pam", []string{"-o", "UsePAM=yes"}},
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			lab := sshtest.NewLab(b, 1, sshtest.Options{SSHDArgs: v.args})
			u := benchUser(b, lab)
			h := lab.Hosts[0]
			state := b.TempDir()
			const k = 20 // connections per iteration: sshd's CPU is counted in 10 ms ticks
			connect := func(run bool) {
				c := clientsVia(b, lab.DialContext, state, u, lab.Hosts)[0]
				defer c.Close()
				var err error
				if run {
					_, err = c.Run(context.Background(), dssh.Command{Cmd: "true"})
				} else {
					err = c.Connect(context.Background())
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			openssh := func() {
				run(b, "ip", "netns", "exec", lab.NetNS, "ssh", "-i", u.Key, "-o", "StrictHostKeyChecking=no",
					"-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
					u.Name+"@"+h.Addr, "true")
			}
			type cost struct{ wall, client, server time.Duration }
			measure := func(fn func()) cost {
				time.Sleep(300 * time.Millisecond) // let sshd reap what ran before
				c0, s0, t0 := cpuTime(b), h.CPUTime(), time.Now()
				for j := 0; j < k; j++ {
					fn()
				}
				wall, client := time.Since(t0), cpuTime(b)-c0
				time.Sleep(300 * time.Millisecond)
				return cost{wall, client, h.CPUTime() - s0}
			}
			connect(false) // pin the host key: the runs below are re-connections to a known host
			var conn, runTrue, sshTrue cost
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				add := func(dst *cost, c cost) { dst.wall += c.wall; dst.client += c.client; dst.server += c.server }
				add(&conn, measure(func() { connect(false) }))
				add(&runTrue, measure(func() { connect(true) }))
				add(&sshTrue, measure(openssh))
			}
			per := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N*k) }
			b.ReportMetric(per(conn.wall), "ms-wall/connect")
			b.ReportMetric(per(conn.client), "ms-client-CPU/connect")
			b.ReportMetric(per(conn.server), "ms-sshd-CPU/connect")
			b.ReportMetric(per(runTrue.wall), "ms-wall/connect+true")
			b.ReportMetric(per(runTrue.client), "ms-client-CPU/connect+true")
			b.ReportMetric(per(runTrue.server), "ms-sshd-CPU/connect+true")
			b.ReportMetric(per(sshTrue.wall), "ms-wall/openssh-ssh-true")
			b.ReportMetric(per(sshTrue.server), "ms-sshd-CPU/openssh-ssh-true")
		})
	}
}

// BenchmarkUpload200MB uploads a ~200 MB tree with Client.Upload and with the OpenSSH client
// (`tar | ssh` and `scp -r`) to the same host in the same run, and reports throughputs and ratios.
func BenchmarkUpload200MB(b *testing.B) {
	lab := sshtest.NewLab(b, 1, sshtest.Options{})
	h := lab.Hosts[0]
	u := benchUser(b, lab)
	src := filepath.Join(b.TempDir(), "tree")
	size := makeTree(b, src)
	// The user extracts there: a directory whose whole path it can reach.
	dest, err := os.MkdirTemp("", "dhctl-bench-upload-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dest)
	if err := os.Chmod(dest, 0o777); err != nil {
		b.Fatal(err)
	}
	c := clientsFor(b, lab, u, lab.Hosts)[0]
	defer c.Close()
	if err := c.Connect(context.Background()); err != nil {
		b.Fatal(err)
	}
	sshArgs := []string{"netns", "exec", lab.NetNS, "ssh", "-i", u.Key, "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes"}
	var tDhctl, tTarSSH, tScp time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		target := filepath.Join(dest, "dhctl")
		start := time.Now()
		if err := c.Upload(context.Background(), dssh.Upload{RemoteDir: target, LocalDir: src}); err != nil {
			b.Fatal(err)
		}
		tDhctl += time.Since(start)
		os.RemoveAll(target)

		target = filepath.Join(dest, "tarssh")
		start = time.Now()
		sh := fmt.Sprintf("tar -C %s -cf - . | ip %s %s 'mkdir -p %s && tar -xpf - -C %s'",
			src, strings.Join(sshArgs, " "), u.Name+"@"+h.Addr, target, target)
		run(b, "sh", "-c", sh)
		tTarSSH += time.Since(start)
		os.RemoveAll(target)

		target = filepath.Join(dest, "scp")
		start = time.Now()
		scp := append([]string{"netns", "exec", lab.NetNS, "scp", "-q", "-r", "-p", "-i", u.Key, "-o", "StrictHostKeyChecking=no",
			"-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes"}, src, u.Name+"@"+h.Addr+":"+target)
		run(b, "ip", scp...)
		tScp += time.Since(start)
		os.RemoveAll(target)
	}
	mbps := func(d time.Duration) float64 { return float64(size) * float64(b.N) / d.Seconds() / (1 << 20) }
	b.ReportMetric(float64(size)/(1<<20), "MiB-tree")
	b.ReportMetric(mbps(tDhctl), "MiB/s-dhctl")
	b.ReportMetric(mbps(tTarSSH), "MiB/s-tar|ssh")
	b.ReportMetric(mbps(tScp), "MiB/s-scp")
	b.ReportMetric(tTarSSH.Seconds()/tDhctl.Seconds(), "ratio-vs-tar|ssh")
	b.ReportMetric(tScp.Seconds()/tDhctl.Seconds(), "ratio-vs-scp")
}

// makeTree writes 150 files of 1 MiB and 5000 files of 10 KiB (about 200 MB), random content.
func makeTree(b *testing.B, dir string) int64 {
	var total int64
	write := func(rel string, n int) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		data := make([]byte, n)
		rand.Read(data)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			b.Fatal(err)
		}
		total += int64(n)
	}
	for i := 0; i < 150; i++ {
		write(fmt.Sprintf("big/%02d/f%03d", i%10, i), 1<<20)
	}
	for i := 0; i < 5000; i++ {
		write(fmt.Sprintf("small/%02d/f%04d", i%50, i), 10<<10)
	}
	return total
}

func run(b *testing.B, name string, args ...string) {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		b.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// resetPeakRSS resets VmHWM (Linux: writing 5 to clear_refs).
func resetPeakRSS(b *testing.B) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Logf("cannot reset peak RSS: %v", err)
	}
}

// peakRSS returns VmHWM in KiB.
func peakRSS(b *testing.B) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb
		}
	}
	return 0
}

// cpuTime is the user+system CPU time this process has used so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// serverCPU sums the CPU time of all the lab's sshd processes and their reaped children.
func serverCPU(lab *sshtest.Lab) time.Duration {
	var d time.Duration
	for _, h := range lab.Hosts {
		d += h.CPUTime()
	}
	return d
}
