// Package realapps holds the tests of the open-source apps ported to erg
// (apps/tiddlywiki, apps/radicale, apps/mediawiki, apps/etherpad): each installs the signed package
// `make apps-real` built, runs it in grains on real nodes and drives it in
// a headless Chromium. They run with `make test-apps-real`, which sets
// ERG_REAL_APPS to the packages dir; without it (as in `make test`) they
// skip, since building the packages fetches their upstream releases.
package realapps
