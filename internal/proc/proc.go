// Package proc starts child processes that die with their parent.
package proc

import (
	"os/exec"
	"runtime"
	"syscall"
)

// Start starts cmd so that it gets sig when this process dies, and returns
// a channel closed once it has exited (its status then in Wait's error,
// passed to onExit). Linux delivers the parent-death signal when the
// *thread* that forked exits, so the forking goroutine keeps its thread
// locked until the child is gone.
func Start(cmd *exec.Cmd, sig syscall.Signal, onExit func(error)) (<-chan struct{}, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = sig
	started := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		err := cmd.Wait()
		if onExit != nil {
			onExit(err)
		}
		close(done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return done, nil
}
