import * as client from 'openid-client';

export interface OidcSettings {
  /** The provider's issuer URL (discovery at <issuer>/.well-known/openid-configuration). */
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** Where the provider sends the browser back: <public url>/v1/auth/oidc/callback. */
  redirectUri: string;
  /** Plain http to the provider (a loopback test provider only). */
  allowHttp?: boolean;
}

/** What the provider vouched for. */
export interface OidcClaims {
  issuer: string;
  subject: string;
  email?: string;
  emailVerified?: boolean;
}

/**
 * OpenID Connect sign-in (authorization code flow with PKCE, state and nonce) through openid-client. The
 * provider is discovered on first use; the state lives in the store (any process can take the callback).
 */
export class OidcSignIn {
  readonly #s: OidcSettings;
  #config: Promise<client.Configuration> | undefined;

  constructor(s: OidcSettings) {
    this.#s = s;
  }

  #configuration(): Promise<client.Configuration> {
    this.#config ??= client
      .discovery(new URL(this.#s.issuer), this.#s.clientId, this.#s.clientSecret, undefined, this.#s.allowHttp ? { execute: [client.allowInsecureRequests] } : undefined)
      .catch((e: unknown) => {
        this.#config = undefined; // try discovery again next time
        throw e;
      });
    return this.#config;
  }

  /** The provider's authorization URL, and what the callback needs to check (kept by the caller). */
  async start(keep: (data: { verifier: string; nonce: string }) => Promise<string>): Promise<string> {
    const config = await this.#configuration();
    const verifier = client.randomPKCECodeVerifier();
    const nonce = client.randomNonce();
    const state = await keep({ verifier, nonce });
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: this.#s.redirectUri,
      scope: 'openid email profile',
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      nonce,
    });
    return url.href;
  }

  /**
   * Exchanges the callback's code (checking state, issuer, PKCE, nonce and the ID token) for the user's claims.
   * `query`: the callback's query string; the URL it completes is the configured redirect URI (sent again with
   * the code, as the token endpoint requires).
   */
  async finish(query: string, state: string, kept: { verifier: string; nonce: string }): Promise<OidcClaims> {
    const config = await this.#configuration();
    const callbackUrl = new URL(this.#s.redirectUri);
    callbackUrl.search = query;
    const tokens = await client.authorizationCodeGrant(config, callbackUrl, { pkceCodeVerifier: kept.verifier, expectedNonce: kept.nonce, expectedState: state, idTokenExpected: true });
    const c = tokens.claims();
    if (!c) throw new Error('no ID token');
    // Providers that keep scope claims out of the ID token (oidc-provider's default) answer them at userinfo.
    const info: Record<string, unknown> = typeof c.email === 'string' ? c : await client.fetchUserInfo(config, tokens.access_token, c.sub);
    return {
      issuer: c.iss,
      subject: c.sub,
      ...(typeof info.email === 'string' ? { email: info.email } : {}),
      ...(typeof info.email_verified === 'boolean' ? { emailVerified: info.email_verified } : {}),
    };
  }
}
