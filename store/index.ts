export type * from './cost-event.ts';
