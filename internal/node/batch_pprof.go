//go:build x6pprof

package node

// Profiling hook for bench/ (docs/performance.md), compiled only with -tags x6pprof:
// X0TTA6BL4_CPUPROFILE=FILE,SECONDS,DELAY writes a CPU profile (%p in FILE: the pid) of SECONDS seconds starting DELAY
// seconds after the process starts.

import (
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

func init() {
	spec := os.Getenv("X0TTA6BL4_CPUPROFILE")
	if spec == "" {
		return
	}
	parts := strings.Split(spec, ",")
	secs, delay := 10, 0
	if len(parts) > 1 {
		secs, _ = strconv.Atoi(parts[1])
	}
	if len(parts) > 2 {
		delay, _ = strconv.Atoi(parts[2])
	}
	go func() {
		time.Sleep(time.Duration(delay) * time.Second)
		f, err := os.Create(strings.ReplaceAll(parts[0], "%p", strconv.Itoa(os.Getpid())))
		if err != nil {
			return
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return
		}
		time.Sleep(time.Duration(secs) * time.Second)
		pprof.StopCPUProfile()
		f.Close()
	}()
}
