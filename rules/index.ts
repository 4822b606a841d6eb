export * from './money.ts';
export * from './cost-model.ts';
export * from './states.ts';
