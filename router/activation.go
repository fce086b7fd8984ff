package router

import (
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Listeners handed to the router by whoever started it, by the systemd
// socket-activation protocol: LISTEN_FDS descriptors from 3 up, named in
// LISTEN_FDNAMES (colon-separated) by the address they listen on, host and
// port joined by "_" ("127.0.1.1_8000"; ActivationName). A namespace topology hands the router the front
// doors that listen on another host's address (a region's entry on its
// first node); systemd can hand any.
var activation struct {
	once   sync.Once
	mu     sync.Mutex
	byAddr map[string]net.Listener
}

func activated() {
	activation.byAddr = map[string]net.Listener{}
	if pid := os.Getenv("LISTEN_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return
	}
	n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if err != nil || n <= 0 {
		return
	}
	names := strings.Split(os.Getenv("LISTEN_FDNAMES"), ":")
	for i := 0; i < n && i < len(names); i++ {
		f := os.NewFile(uintptr(3+i), names[i])
		ln, err := net.FileListener(f)
		f.Close()
		if err == nil {
			activation.byAddr[names[i]] = ln
		}
	}
	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_FDNAMES")
}

// ActivationName is the name of a listener on addr (host:port) in
// LISTEN_FDNAMES, whose separator is ":".
func ActivationName(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host + "_" + port
}

// inherited returns the listener handed over for addr, once.
func inherited(addr string) net.Listener {
	activation.once.Do(activated)
	activation.mu.Lock()
	defer activation.mu.Unlock()
	name := ActivationName(addr)
	ln := activation.byAddr[name]
	delete(activation.byAddr, name)
	return ln
}
