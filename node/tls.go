package node

import "erg/tlsnode"

// TLSConfig is how the web port serves HTTPS on a real domain.
type TLSConfig = tlsnode.Options

// tlsDir holds the node's CA, its certificates and the ACME settings.
const tlsDir = "tls"
