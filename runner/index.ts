export * from './errors.ts';
export * from './halt-bus.ts';
export { RedisHaltBus, type RedisHaltBusOptions } from './redis-halt-bus.ts';
export { DEFAULT_BACKOFF, type Backoff } from './redis-conn.ts';
