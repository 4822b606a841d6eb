import { createTransport, type Transporter } from 'nodemailer';

/** One message to one address (plain text; links are written out). */
export interface MailMessage {
  to: string;
  subject: string;
  text: string;
}

/** How accounts send email (verification links). */
export interface Mailer {
  send(m: MailMessage): Promise<void>;
}

/**
 * Email over SMTP (nodemailer). `url` is an SMTP URL (`smtp://user:pass@host:587`, `smtps://...`); the password
 * is never logged.
 */
export class SmtpMailer implements Mailer {
  readonly #transport: Transporter;
  readonly #from: string;

  constructor(url: string, from: string) {
    this.#transport = createTransport(url);
    this.#from = from;
  }

  async send(m: MailMessage): Promise<void> {
    await this.#transport.sendMail({ from: this.#from, to: m.to, subject: m.subject, text: m.text });
  }

  close(): void {
    this.#transport.close();
  }
}
