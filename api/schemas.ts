/**
 * Schemas shared by the routes. Every string a person or a terminal may read (names, reasons) is free of
 * control characters (C0, DEL, C1): a key name cannot carry NUL or terminal escapes into `forge keys list`
 * or a log line.
 */
export const NO_CONTROL = '^[^\\u0000-\\u001F\\u007F-\\u009F]*$';

/** Free text of min..max characters without control characters. */
export const text = (min: number, max: number) => ({ type: 'string', minLength: min, maxLength: max, pattern: NO_CONTROL }) as const;

export const TENANT_ID = { type: 'string', pattern: '^[A-Za-z0-9._-]{1,64}$' } as const;
export const RUN_ID = { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,128}$' } as const;
/** A scope key: global, tenant:<id>, run:<tenant>/<run> (encode / as %2F in a path). */
export const SCOPE = { type: 'string', maxLength: 256, pattern: '^(global|tenant:[A-Za-z0-9._-]{1,64}|run:[A-Za-z0-9._-]{1,64}/[A-Za-z0-9._:-]{1,128})$' } as const;

/**
 * A USD amount: a decimal string (at most 12 integer digits, 6 decimals: the ledger counts whole
 * micro-dollars) or a JSON number in [0, 1e12]. Never "1e5": exponents are refused.
 */
export const USD = { anyOf: [{ type: 'string', pattern: '^\\d{1,12}(\\.\\d{1,6})?$' }, { type: 'number', minimum: 0, maximum: 1e12 }] } as const;

export const DATE_TIME = { type: 'string', format: 'date-time', maxLength: 40 } as const;

/** A body with no fields (POST actions that take none); an absent body is fine too. */
export const EMPTY_BODY = { type: ['object', 'null'], additionalProperties: false, properties: {} } as const;
