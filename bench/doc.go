// Package bench holds Lifeline's benchmarks: each subdirectory measures one
// claim on this machine and prints figures, side by side with a peer tool
// where one is installable from Debian's packages. They are Go benchmarks
// that start real topologies, run with:
//
//	go test ./bench/NAME -run XXX -bench . -benchtime 1x -v
//
// None runs as part of `go test ./...` (no -bench), and none asserts a
// timing: figures go in the issue notes.
package bench
