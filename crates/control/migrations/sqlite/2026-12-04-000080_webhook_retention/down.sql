DROP INDEX webhook_debounce_last;
