package node

import (
	"context"

	"erg/webui"
)

// owner is the node's owner account, whom the control socket acts for.
func (n *testNode) owner() webui.User {
	n.t.Helper()
	u, err := n.Owner(context.Background())
	if err != nil {
		n.t.Fatal(err)
	}
	return u
}
