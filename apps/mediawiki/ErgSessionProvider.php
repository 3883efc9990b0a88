<?php
// ErgSessionProvider makes MediaWiki's session user the one erg's proxy
// names: the X-Erg-Username of a request whose X-Erg-Permissions hold
// "write" (its account made on the first visit, as MediaWiki makes
// accounts for a session provider's users), or an anonymous reader. erg
// sets those headers on every request and drops any a browser sent, so
// MediaWiki's own login and account creation are never used: it is the
// only session provider, and it lets no one change user.

use MediaWiki\Session\ImmutableSessionProviderWithCookie;
use MediaWiki\Session\SessionInfo;
use MediaWiki\Session\UserInfo;

class ErgSessionProvider extends ImmutableSessionProviderWithCookie {
	public function provideSessionInfo( WebRequest $request ) {
		$id = $this->getSessionIdFromCookie( $request );
		$name = self::editor( $request );
		$user = $name === null ? UserInfo::newAnonymous() : UserInfo::newFromName( $name, true );
		return new SessionInfo( SessionInfo::MAX_PRIORITY, [
			'provider' => $this,
			'id' => $id,
			'userInfo' => $user,
			'persisted' => $id !== null,
		] );
	}

	public function newSessionInfo( $id = null ) {
		return null;
	}

	/** @return string|null the editor's MediaWiki user name, or null for a reader */
	private static function editor( WebRequest $request ) {
		$perms = array_map( 'trim', explode( ',', (string)$request->getHeader( 'X-Erg-Permissions' ) ) );
		$name = trim( (string)$request->getHeader( 'X-Erg-Username' ) );
		if ( !in_array( 'write', $perms, true ) || $name === '' ) {
			return null;
		}
		$canonical = MediaWiki\MediaWikiServices::getInstance()->getUserNameUtils()->getCanonical( $name, 'creatable' );
		return $canonical === false ? null : $canonical;
	}
}
