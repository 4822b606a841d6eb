import { createServer, type Server } from 'node:http';
import Provider from 'oidc-provider';

/**
 * A real OpenID Connect provider (npm oidc-provider) on loopback, with its development sign-in pages (any
 * login, any password): the account id is the login, its email `<login>@sso.example.com`, verified.
 */
export async function startOidcProvider(opts: { port: number; clientId: string; clientSecret: string; redirectUri: string }): Promise<{ issuer: string; close(): Promise<void> }> {
  const issuer = `http://127.0.0.1:${opts.port}`;
  const provider = new Provider(issuer, {
    clients: [{ client_id: opts.clientId, client_secret: opts.clientSecret, redirect_uris: [opts.redirectUri], grant_types: ['authorization_code'], response_types: ['code'] }],
    claims: { openid: ['sub'], email: ['email', 'email_verified'] },
    cookies: { keys: ['forge-test-cookie-key'] },
    pkce: { required: () => true },
    findAccount: (_ctx, id) => ({ accountId: id, claims: () => ({ sub: id, email: `${id}@sso.example.com`, email_verified: true }) }),
  });
  // Plain http on loopback: the provider must not insist on secure cookies.
  provider.proxy = true;
  const handle = provider.callback();
  const server: Server = createServer((req, res) => void handle(req, res));
  await new Promise<void>((r) => server.listen(opts.port, '127.0.0.1', () => r()));
  return { issuer, close: () => new Promise<void>((r) => server.close(() => r())) };
}
