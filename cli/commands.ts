// Commands of later parts register themselves here (start, keys, run).
export {};
