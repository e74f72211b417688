package netnstest

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// In runs fn on an OS thread that has entered namespace ns, and returns when fn has. Sockets and
// devices fn opens stay in ns; programs it attaches by ifindex attach there. The thread is never
// returned to the Go scheduler: it ends with its goroutine, namespace and all.
func In(t testing.TB, ns string, fn func()) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		var err error
		defer func() { done <- err }() // also when fn ends its goroutine
		runtime.LockOSThread()         // never unlocked
		fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			err = unix.Setns(fd, unix.CLONE_NEWNET)
			unix.Close(fd)
		}
		if err == nil {
			fn()
		}
	}()
	if err := <-done; err != nil {
		t.Fatalf("enter namespace %s: %v", ns, err)
	}
}
