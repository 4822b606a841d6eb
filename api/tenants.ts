import type { TenantDirectory } from './http.ts';

/** Where created tenants live (store/tenants.ts's TenantTable). */
export interface TenantSource {
  add(t: { tenantId: string; createdAt: number; actor: string; reason: string }): Promise<void>;
  list(): Promise<Array<{ tenantId: string; createdAt: number; actor: string; reason: string }>>;
}

/**
 * The tenants Forge knows: those the bands file names, those an admin created (the store's `tenants`
 * table, which every API process shares), and, to stay compatible with keys made before tenants were
 * created explicitly, those an API key is bound to. A miss re-reads the table (at most once a second),
 * so a tenant created on another process is known here within a second.
 */
export class TenantRegistry implements TenantDirectory {
  private created = new Set<string>();
  private readAt = -Infinity;
  private reading: Promise<void> | undefined;

  constructor(
    private readonly deps: {
      fromBands: () => Iterable<string>;
      fromKeys: () => Iterable<string | null>;
      table: TenantSource;
      now: () => number;
    },
  ) {}

  /** Reads the created tenants (at start; afterwards on a miss). */
  async refresh(): Promise<void> {
    this.reading ??= (async () => {
      try {
        this.created = new Set((await this.deps.table.list()).map((t) => t.tenantId));
        this.readAt = Date.now();
      } finally {
        this.reading = undefined;
      }
    })();
    return this.reading;
  }

  private knownNow(tenantId: string): boolean {
    if (this.created.has(tenantId)) return true;
    for (const t of this.deps.fromBands()) if (t === tenantId) return true;
    for (const t of this.deps.fromKeys()) if (t === tenantId) return true;
    return false;
  }

  async has(tenantId: string): Promise<boolean> {
    if (this.knownNow(tenantId)) return true;
    if (Date.now() - this.readAt < 1000) return false;
    await this.refresh();
    return this.created.has(tenantId);
  }

  /** Every known tenant id, sorted. */
  async list(): Promise<string[]> {
    await this.refresh();
    const all = new Set<string>([...this.created, ...this.deps.fromBands()]);
    for (const t of this.deps.fromKeys()) if (t !== null) all.add(t);
    return [...all].sort();
  }

  /** Creates a tenant (audited: the row records who and why). False when it already exists. */
  async create(tenantId: string, actor: string, reason: string): Promise<boolean> {
    if (await this.has(tenantId)) return false;
    await this.deps.table.add({ tenantId, createdAt: this.deps.now(), actor, reason });
    this.created.add(tenantId);
    return true;
  }
}
