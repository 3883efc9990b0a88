<?php
// router.php is PHP's built-in server's router for MediaWiki: MediaWiki's
// entry points (index.php, load.php, api.php, rest.php, ...) run, with
// what follows their name as PATH_INFO (/index.php/Main_Page,
// /rest.php/v1/page/...); the other files of its tree (styles, scripts,
// images) are served as they are, except PHP files, which are never
// served or run; a missing file with an extension is a 404; every other
// path is a page title for index.php.
$root = $_SERVER['DOCUMENT_ROOT'];
$path = rawurldecode( parse_url( $_SERVER['REQUEST_URI'], PHP_URL_PATH ) ?? '/' );
$entry = '(index|load|api|rest|opensearch_desc|thumb)\.php';
if ( preg_match( "#^/($entry)(/.*)?$#", $path, $m ) ) {
	$script = $m[1];
	$_SERVER['PATH_INFO'] = $m[3] ?? '';
} elseif ( str_contains( $path, '..' ) || str_ends_with( $path, '.php' ) ) {
	http_response_code( 404 );
	return true;
} elseif ( is_file( $root . $path ) ) {
	return false;
} elseif ( preg_match( '#\.[A-Za-z0-9]+$#', $path ) ) {
	http_response_code( 404 );
	return true;
} else {
	$script = 'index.php';
}
$_SERVER['SCRIPT_NAME'] = "/$script";
$_SERVER['SCRIPT_FILENAME'] = "$root/$script";
$_SERVER['PHP_SELF'] = "/$script" . ( $_SERVER['PATH_INFO'] ?? '' );
chdir( $root );
require "$root/$script";
