package node

import (
	"erg/shares"
)

// maxShareLifetime bounds a share's expiry; longer means "never".
const maxShareLifetime = shares.MaxLifetime
