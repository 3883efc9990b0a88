// Package sandbox is Linux isolation only: namespaces, pivot_root, seccomp,
// cgroups, the in-sandbox init; it knows nothing of apps, users or HTTP.
//
// A sandbox is the running binary re-executed as pid 1 of new user, mount,
// pid, ipc, uts, network and cgroup namespaces (so main must call
// MaybeInit first). The init mounts the app tree read-only as /, drops
// every privilege, installs a seccomp filter and execs the app; it stays
// as pid 1 to reap, forward SIGTERM, report the app's exit, and connect to
// the app's TCP port on the host's behalf (Sandbox.Dial): its network
// namespace holds only loopback, which nothing outside can reach.
package sandbox
