"""Timeline files (OTIO, FCPXML, FCP 7 XML, EDL) through OpenTimelineIO and its adapters."""
