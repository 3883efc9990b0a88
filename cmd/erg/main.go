// Command erg runs a personal cloud node (`erg run`) and talks to a running
// one (every other subcommand).
package main

import (
	"os"

	"erg/sandbox"
)

func main() {
	sandbox.MaybeInit()
	os.Exit(execute(os.Args[1:]))
}
