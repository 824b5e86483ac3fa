package inventory

import (
	"strconv"
	"strings"
	"sync"
	"testing"
)

func TestMastersComeFirstAndAddressesAreUnique(t *testing.T) {
	inv, err := New(Host{SSH: "10.0.0.3", IP: "10.0.0.3", Role: Worker}, Host{SSH: "10.0.0.1:2222", IP: "10.0.0.1", Role: Master})
	if err != nil {
		t.Fatal(err)
	}
	if err := inv.Add(Host{SSH: "10.0.0.2", IP: "10.0.0.2", Role: Master}); err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, h := range inv.All() {
		order = append(order, h.IP)
	}
	if strings.Join(order, " ") != "10.0.0.1 10.0.0.2 10.0.0.3" {
		t.Errorf("order %v: masters first, in the order added", order)
	}
	if fm, ok := inv.FirstMaster(); !ok || fm.SSH != "10.0.0.1:2222" {
		t.Errorf("first master %+v %v", fm, ok)
	}
	if len(inv.Masters()) != 2 || len(inv.Workers()) != 1 {
		t.Errorf("masters %v workers %v", inv.Masters(), inv.Workers())
	}
	err = inv.Add(Host{SSH: "other", IP: "10.0.0.2", Role: Worker})
	if err == nil || !strings.Contains(err.Error(), "same node address 10.0.0.2") {
		t.Errorf("duplicate address: %v", err)
	}
	if err := inv.Add(Host{SSH: "node-a", IP: "node-a", Role: Worker}); err == nil || !strings.Contains(err.Error(), "not an IP address") {
		t.Errorf("a name as node address: %v", err)
	}
	if err := inv.Add(Host{SSH: "10.0.0.9", IP: "10.0.0.9", Role: "boss"}); err == nil {
		t.Error("an unknown role was accepted")
	}
	// The same machine again changes its role (a cloud VM's record refreshed), not the count.
	if err := inv.Add(Host{SSH: "10.0.0.3", IP: "10.0.0.3", Role: Master}); err != nil || inv.Len() != 3 || len(inv.Masters()) != 3 {
		t.Errorf("re-add: %v, %d hosts, %d masters", err, inv.Len(), len(inv.Masters()))
	}
}

func TestEmptyInventoryHasNoFirstMaster(t *testing.T) {
	inv, _ := New()
	if _, ok := inv.FirstMaster(); ok {
		t.Error("an empty inventory has a first master")
	}
}

// Infrastructure phases add VMs while other goroutines read.
func TestConcurrentAddAndRead(t *testing.T) {
	inv, _ := New()
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			ip := "10.1.0." + strconv.Itoa(i+1)
			if err := inv.Add(Host{SSH: ip, IP: ip, Role: Worker}); err != nil {
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			_ = inv.Workers()
		}()
	}
	wg.Wait()
	if inv.Len() != 50 {
		t.Errorf("%d hosts, want 50", inv.Len())
	}
}

func TestNodeAddress(t *testing.T) {
	for in, want := range map[string]string{"10.0.0.1": "10.0.0.1", "10.0.0.1:22": "10.0.0.1", "[fd00::1]:22": "fd00::1", "fd00::1": "fd00::1", "node-a": "", "node-a:22": ""} {
		if got := NodeAddress(in); got != want {
			t.Errorf("NodeAddress(%q) = %q, want %q", in, got, want)
		}
	}
}
