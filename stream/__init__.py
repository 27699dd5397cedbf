"""The streaming side: embedded broker, replay producer, and the Faust scoring worker."""
