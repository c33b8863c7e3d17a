// EXIficient (the copy inside Josev's EXICodec.jar) as an independent Amendment 1 encoder for the differential test.
// stdin: one request per line, "<xsd path>\t<base64 XML>"; stdout: one line each, the EXI bytes in hex or "ERR <why>".
// Options as the -20 profile (docs: exi-profile §1): schema-informed, bit-packed, non-strict, default fidelity,
// no string-table values (valuePartitionCapacity 0), no built-in grammars for undeclared content.
import com.siemens.ct.exi.core.CodingMode;
import com.siemens.ct.exi.core.EXIFactory;
import com.siemens.ct.exi.core.FidelityOptions;
import com.siemens.ct.exi.core.grammars.Grammars;
import com.siemens.ct.exi.core.helpers.DefaultEXIFactory;
import com.siemens.ct.exi.grammars.GrammarFactory;
import com.siemens.ct.exi.main.api.sax.EXIResult;
import java.io.BufferedReader;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.InputStreamReader;
import java.io.StringReader;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.HashMap;
import java.util.Map;
import javax.xml.parsers.SAXParserFactory;
import org.apache.xerces.xni.XMLResourceIdentifier;
import org.apache.xerces.xni.parser.XMLEntityResolver;
import org.apache.xerces.xni.parser.XMLInputSource;
import org.xml.sax.InputSource;
import org.xml.sax.XMLReader;

public class ExificientAmd1 {
    // xmldsig-core-schema.xsd names a DTD: offline, it resolves to nothing
    static final XMLEntityResolver NO_DTD = (XMLResourceIdentifier id) -> {
        String sys = id.getLiteralSystemId();
        if (sys != null && sys.endsWith(".dtd")) {
            return new XMLInputSource(id.getPublicId(), sys, id.getBaseSystemId(), new StringReader(""), null);
        }
        return null;
    };

    public static void main(String[] args) throws Exception {
        Map<String, Grammars> grammars = new HashMap<>();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            try {
                String[] parts = line.split("\t", 2);
                Grammars g = grammars.get(parts[0]);
                if (g == null) {
                    g = GrammarFactory.newInstance().createGrammars(parts[0], NO_DTD);
                    grammars.put(parts[0], g);
                }
                EXIFactory f = DefaultEXIFactory.newInstance();
                f.setGrammars(g);
                f.setCodingMode(CodingMode.BIT_PACKED);
                f.setFidelityOptions(FidelityOptions.createDefault());
                f.setValuePartitionCapacity(0);
                f.setMaximumNumberOfBuiltInElementGrammars(0);
                f.setMaximumNumberOfBuiltInProductions(0);
                ByteArrayOutputStream out = new ByteArrayOutputStream();
                EXIResult result = new EXIResult(f);
                result.setOutputStream(out);
                SAXParserFactory spf = SAXParserFactory.newInstance();
                spf.setNamespaceAware(true);
                XMLReader reader = spf.newSAXParser().getXMLReader();
                reader.setContentHandler(result.getHandler());
                byte[] xml = Base64.getDecoder().decode(parts[1]);
                reader.parse(new InputSource(new ByteArrayInputStream(xml)));
                StringBuilder hex = new StringBuilder();
                for (byte b : out.toByteArray()) hex.append(String.format("%02x", b));
                System.out.println(hex);
            } catch (Exception e) {
                System.out.println("ERR " + String.valueOf(e).replace('\n', ' '));
            }
            System.out.flush();
        }
    }
}
