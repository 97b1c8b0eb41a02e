package freeport

import (
	"fmt"
	"net"
	"testing"
)

func TestTakeGivesDistinctFreePorts(t *testing.T) {
	ports, err := Take(20)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Fatalf("port %d given twice in %v", p, ports)
		}
		seen[p] = true
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("port %d was given as free: %v", p, err)
		}
		ln.Close()
	}
}
