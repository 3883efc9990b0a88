<?php
// erg's LocalSettings.php for MediaWiki in a grain (MW_CONFIG_FILE).
//
// The settings install.php wrote on the grain's first start (database,
// secret key) are in /var/mediawiki; this file loads them and then makes
// the wiki erg's: the grain's own origin as the server, nothing written
// outside /var, and who is asking taken from erg's identity headers
// instead of MediaWiki's login. A user whose role holds "write" is
// signed in as their erg user name (the account made on their first
// visit) and may edit; anyone else reads, anonymously.
if ( !defined( 'MEDIAWIKI' ) ) {
	exit;
}

$ergVar = getenv( 'MW_ERG_VAR' ) ?: '/var/mediawiki';
require "$ergVar/LocalSettings.php";

// The wiki answers on whatever origin the grain is reached at: the node's
// g-<id> host, or a friend's node's.
$wgServer = WebRequest::detectServer();
$wgCanonicalServer = $wgServer;
$wgScriptPath = '';

$wgSQLiteDataDir = "$ergVar/data";
$wgCacheDirectory = "$ergVar/cache";
$wgUploadDirectory = "$ergVar/images";
$wgTmpDirectory = '/tmp';
$wgEnableUploads = false;
$wgMainCacheType = CACHE_DB;
$wgSessionCacheType = CACHE_DB;
// No mail, no outbound network: a grain has neither.
$wgEnableEmail = false;
$wgEnableUserEmail = false;
$wgAllowExternalImages = false;
$wgPingback = false;
// What MediaWiki runs besides PHP: diff3 (with bash and timeout, which
// its shell wrapper uses) merges edit conflicts; git and ImageMagick,
// which install.php finds on the packer's machine, are not in the package.
$wgDiff3 = '/usr/bin/diff3';
$wgGitBin = false;
$wgUseImageMagick = false;
// MediaWiki's job queue runs on page views; with a few requests there is
// no need to run more than one job each.
$wgJobRunRate = 1;

// Who may do what: everyone the grain lets in reads; editors (the "user"
// group, which the signed-in erg users are) edit. No one makes accounts
// or signs in through MediaWiki.
$wgGroupPermissions['*']['read'] = true;
$wgGroupPermissions['*']['edit'] = false;
$wgGroupPermissions['*']['createpage'] = false;
$wgGroupPermissions['*']['createtalk'] = false;
$wgGroupPermissions['*']['createaccount'] = false;
$wgGroupPermissions['*']['autocreateaccount'] = true;
$wgGroupPermissions['user']['edit'] = true;
// A friend's user is name@node: '@' must be allowed in a user name.
$wgInvalidUsernameCharacters = ':>=';
$wgUserrightsInterwikiDelimiter = '#';

require_once __DIR__ . '/ErgSessionProvider.php';
$wgSessionProviders = [
	ErgSessionProvider::class => [
		'class' => ErgSessionProvider::class,
		'args' => [ [ 'sessionCookieName' => 'erg_mw_session' ] ],
	],
];
