// Package backup makes and restores the node's backups: a repository
// format of content-defined chunks (restic's chunker), each encrypted and
// authenticated, snapshots per grain and of the node's own metadata,
// keys derived from a recovery code of which the node keeps only the
// parts that write; destinations (a local directory, a friend's node),
// retention, the schedule, and restores.
package backup
