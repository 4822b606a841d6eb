/**
 * accounts/: users of the web UI (signup with a verified email, scrypt passwords, TOTP with recovery codes,
 * sessions, OIDC single sign-on, a lockout every process shares), the Mailer port with its SMTP
 * implementation, and the account pages (a fastify plugin). The API (api/) wires them to cookies, CSRF,
 * rate limits, roles and API keys.
 */
export { Accounts, OWNER_ROLES, type AccountsBackend, type AccountsOptions, type SessionUser, type SignIn, type TenantCreator } from './service.ts';
export { AccountError, type AccountErrorCode } from './errors.ts';
export { SmtpMailer, type Mailer, type MailMessage } from './mailer.ts';
export { OidcSignIn, type OidcClaims, type OidcSettings } from './oidc.ts';
export { openConfigSecret, parseSecretKey, sealConfigSecret } from './secrets.ts';
export { accountPages } from './pages.ts';
