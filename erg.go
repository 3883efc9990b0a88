// Package erg holds what every part of an erg node agrees on: the domain's
// types (users, apps, grains, shares, friends, listings), errors that carry
// a kind, and the client of the node's JSON API. It imports nothing of
// erg's, so the web layer, the CLI and the federation wire all translate to
// and from it instead of owning it.
package erg
