<?php
// start.php runs MediaWiki in a grain with PHP's built-in web server.
//
// On the grain's first start it installs the wiki: install.php makes the
// SQLite database and writes its LocalSettings.php into /var/mediawiki
// (into a temporary dir renamed at the end, so that a grain stopped
// half-way is installed again rather than left half made). The admin
// account it must make gets a random password no one is told: people
// sign in through erg (see LocalSettings.php). Then it serves the wiki on
// erg's port, with PHP_CLI_SERVER_WORKERS processes so that a slow page
// does not hold up the others.

$ip = getenv( 'MW_INSTALL_PATH' ) ?: '/app/mediawiki';
$var = getenv( 'MW_ERG_VAR' ) ?: '/var/mediawiki';
$port = (int)( getenv( 'PORT' ) ?: 8000 );

function run( array $argv ) {
	$p = proc_open( $argv, [ 0 => [ 'file', '/dev/null', 'r' ], 1 => STDOUT, 2 => STDERR ], $pipes );
	if ( !is_resource( $p ) ) {
		fwrite( STDERR, "start.php: cannot run {$argv[0]}\n" );
		exit( 1 );
	}
	return proc_close( $p );
}

function removeTree( string $path ) {
	if ( is_dir( $path ) && !is_link( $path ) ) {
		foreach ( scandir( $path ) as $e ) {
			if ( $e !== '.' && $e !== '..' ) {
				removeTree( "$path/$e" );
			}
		}
		rmdir( $path );
	} elseif ( file_exists( $path ) || is_link( $path ) ) {
		unlink( $path );
	}
}

if ( !is_file( "$var/LocalSettings.php" ) ) {
	$tmp = "$var.new";
	removeTree( $tmp );
	foreach ( [ $tmp, "$tmp/data", "$tmp/cache", "$tmp/images" ] as $d ) {
		mkdir( $d, 0700, true );
	}
	$code = run( [ PHP_BINARY, "$ip/maintenance/install.php",
		'--dbtype=sqlite', "--dbpath=$tmp/data", '--dbname=wiki',
		'--server=http://localhost', '--scriptpath=', '--lang=en',
		'--skins=Vector', "--confpath=$tmp",
		'--pass=' . bin2hex( random_bytes( 24 ) ),
		'A wiki in a grain', 'WikiAdmin' ] );
	if ( $code !== 0 ) {
		fwrite( STDERR, "start.php: install.php failed ($code)\n" );
		exit( 1 );
	}
	// install.php wrote the paths it was given; the wiki lives at $var.
	$settings = str_replace( $tmp, $var, file_get_contents( "$tmp/LocalSettings.php" ) );
	file_put_contents( "$tmp/LocalSettings.php", $settings );
	removeTree( $var );
	rename( $tmp, $var );
}

// The wiki's settings: erg's, which load what install.php wrote. (Not in
// MediaWiki's dir, where install.php would take them for an existing
// wiki's.)
putenv( 'MW_CONFIG_FILE=' . __DIR__ . '/LocalSettings.php' );
putenv( 'PHP_CLI_SERVER_WORKERS=' . ( getenv( 'PHP_CLI_SERVER_WORKERS' ) ?: '4' ) );
pcntl_exec( PHP_BINARY, [ '-S', "127.0.0.1:$port", '-t', $ip, __DIR__ . '/router.php' ] );
fwrite( STDERR, "start.php: cannot start PHP's web server\n" );
exit( 1 );
